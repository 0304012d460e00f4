"""Every kind of model file gets a clear one-line error where bitgen expects its own model file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bitgen import filetype
from bitgen.cli import main


def _one_line_error(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and match in err, err


def _onnx_file(path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph), path)


def _files(tmp_path):
    files = {}
    files["random.pt"] = tmp_path / "random.pt"
    files["random.pt"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["model.onnx"] = tmp_path / "model.onnx"
    _onnx_file(files["model.onnx"])
    files["model.tflite"] = tmp_path / "model.tflite"
    files["model.tflite"].write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(200))
    files["state.pt"] = tmp_path / "state.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), files["state.pt"])
    files["BitNetMCU_model.h"] = tmp_path / "BitNetMCU_model.h"
    files["BitNetMCU_model.h"].write_text("#define L1_active\n#define L1_bitperweight 16\n")
    files["script.pt"] = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), files["script.pt"])
    files["data.npz"] = tmp_path / "data.npz"
    np.savez(files["data.npz"], x=np.zeros(3))
    files["empty.pt"] = tmp_path / "empty.pt"
    files["empty.pt"].write_bytes(b"")
    return files


EXPECT = {"random.pt": ("unknown", "not a model file"), "model.onnx": ("onnx", "bitgen import"),
          "model.tflite": ("tflite", "not supported yet"), "state.pt": ("torch", "--arch"),
          "BitNetMCU_model.h": ("bitnetmcu", "bitgen import"), "script.pt": ("torchscript", "TorchScript"),
          "data.npz": ("npz", "not a model file"), "empty.pt": ("empty", "empty file")}


def test_kinds_and_messages(tmp_path, capsys):
    for name, path in _files(tmp_path).items():
        kind, message = EXPECT[name]
        assert filetype.kind(path) == kind, name
        _one_line_error(capsys, ["check", str(path), "--random", "1"], message)


def test_random_bytes_never_ask_for_trust_pickle(tmp_path, capsys):
    for seed in range(20):
        path = tmp_path / f"r{seed}.bin"
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 64 + seed * 97, dtype=np.uint8).tobytes())
        code = main(["emit", str(path), "-o", str(tmp_path / "c")])
        err = capsys.readouterr().err
        assert code != 0 and "--trust-pickle" not in err and "not a model file" in err, err


def test_import_refuses_what_it_cannot_convert(tmp_path, capsys):
    files = _files(tmp_path)
    _one_line_error(capsys, ["import", str(files["model.tflite"]), "-o", str(tmp_path / "m.pt")], "not supported yet")
    _one_line_error(capsys, ["import", str(files["random.pt"]), "-o", str(tmp_path / "m.pt")], "not a model file")
    _one_line_error(capsys, ["import", str(files["state.pt"]), "-o", str(tmp_path / "m.pt")], "bitgen quantize")
    _one_line_error(capsys, ["import", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "m.pt")], "no such file")
