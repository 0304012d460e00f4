# bitgen: `make demo` sets everything up and runs the main job end to end; `make test` runs the tests.
PY     := .venv/bin/python
BITGEN := .venv/bin/bitgen
DEMO   := out/demo

.PHONY: setup demo test clean

setup: .venv/.bitgen-setup

.venv/.bitgen-setup: pyproject.toml tools/setup.sh
	tools/setup.sh
	touch $@

# Train a 4-bit MLP on the 8x8 digits that ship with scikit-learn, emit C, prove it bit-exact on
# this computer, build the CH32V003 firmware and run that image on the emulated CH32V003.
demo: setup
	$(BITGEN) train --dataset digits --arch mlp:64,64 --weights 4bitsym --seed 0 -o $(DEMO)/model.pt
	$(BITGEN) emit $(DEMO)/model.pt -o $(DEMO)/c
	$(BITGEN) check $(DEMO)/model.pt --dataset digits --json $(DEMO)/check.json
	$(BITGEN) build --board ch32v003 $(DEMO)/model.pt -o $(DEMO)/fw --json $(DEMO)/build.json
	$(BITGEN) run --board ch32v003-sim $(DEMO)/model.pt --dataset digits --limit 200 --json $(DEMO)/run.json

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf out .pytest_cache .hypothesis
