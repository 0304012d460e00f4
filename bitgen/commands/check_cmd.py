"""bitgen check: build the emitted C on this machine and compare it with the golden model."""
from __future__ import annotations

import argparse

from .. import check
from ..backends.c import lower_max78000
from ..harness import boards
from .common import (SEED, UsageError, add_dataset_arguments, add_kernels_argument, add_model_argument, check_memory,
                     count, is_clips, load_dataset, load_model, resolve_kernels)
from .emit_cmd import default_name
from .outputs import STDOUT, output_dir, output_file, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p)
    add_dataset_arguments(p)
    p.add_argument("--random", type=count(0), default=10000, metavar="N",
                   help="random int8 inputs to compare (default 10000)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the random inputs")
    p.add_argument("--frames", type=count(1, 100000), default=16, metavar="T",
                   help="models with state: frames per random sequence (default 16)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-': to standard output, "
                                                  "instead of the text report)")
    p.add_argument("--keep", metavar="DIR", help="keep the emitted C and the host build here")
    add_kernels_argument(p, "kernel set to check (default: generic, or the --board's first; all are portable C)")
    p.add_argument("--board", help="check the kernel set this board's firmware uses first "
                                   f"(available: {', '.join(boards.available())})")


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def kernels_of(args: argparse.Namespace) -> str:
    """The kernel set: --kernels, else the --board's first, else generic."""
    kernels = resolve_kernels(args)
    if args.board:
        board_sets = boards.get(args.board).image_board.kernels
        if kernels is None:
            return board_sets[0]
        if kernels not in board_sets:
            raise UsageError(f"board {args.board} builds with {', '.join(board_sets)} kernels, not {kernels}")
    return kernels or "generic"


def run(args: argparse.Namespace) -> int:
    kernels = kernels_of(args)
    json_to = output_file(args.json, "--json", stdout=True)
    keep = output_dir(args.keep, "--keep")
    say = (lambda *a: None) if json_to == STDOUT else print  # noqa: E731  (stdout holds the JSON)
    loaded = load_model(args)
    model = lower_max78000.for_c(loaded.ir)  # accelerator layers, if any, as the C back end's ops
    check_memory(args.random * model.input.size, f"{args.random} random inputs of {model.input.size} values",
                 "--random")
    sets = []
    data = load_dataset(args, model)
    if data is not None:
        # clips: every frame compared, accuracy from each clip's last frame
        sets.append(check.InputSet("dataset", data[0], data[1], sequence=is_clips(data[0], model)))
    rand = check.random_inputs(model.input.shape, args.random, args.seed) if args.random > 0 else None
    extreme = check.extreme_inputs(model.input.shape)
    if model.states:  # a model with state: whole sequences, every frame compared
        if rand is not None and len(rand) >= args.frames:
            sets.append(check.InputSet("random", check.as_sequences(rand, args.frames), sequence=True))
        sets.append(check.InputSet("extreme", check.held(extreme, args.frames), sequence=True))
    else:
        if rand is not None:
            sets.append(check.InputSet("random", rand))
        sets.append(check.InputSet("extreme", extreme))
    res = check.run_check(model, sets, loaded.torch_model, workdir=keep,
                          name=default_name(model.name), kernels=kernels)
    rep = res.to_json()
    say(f"model {res.model_hash[:16]}  {kernels} kernels  weights {rep['weight_bytes']} B  "
          f"arena {rep['arena_bytes']} B  MACs {rep['macs']}  strict compile: {res.strict_compile}")
    for s in res.sets:
        unit = "frames" if next(i.sequence for i in sets if i.name == s.name) else "inputs"
        say(f"  {s.name:8s} {s.compared:6d} {unit:6s}   mismatches {s.mismatches}")
    if data is not None:
        acc = res.accuracy
        say(f"  accuracy  torch {_pct(acc['torch'])}  golden {_pct(acc['golden'])}  C {_pct(acc['c'])}")
    write_json(json_to, rep)
    if res.mismatches:
        fm = res.first_mismatch
        say(f"MISMATCH: {res.mismatches} of {res.compared} inputs differ; first at layer {fm['layer']} "
              f"({fm['op']}) of {fm['set']} input {fm['input_index']}: golden {fm.get('golden')} C {fm.get('c')}")
        return 1
    say(f"bit-exact: {res.compared} inputs, every output value equal")
    return 0
