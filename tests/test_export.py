"""bitgen.nn.export.to_ir: which modules export, to what, and the one-line errors for the rest."""
import numpy as np
import pytest
import torch
from torch import nn as tnn

from bitgen.nn import export
from bitgen import golden, ir
from bitgen import nn as bnn
from bitgen.errors import BitgenError


def _mlp() -> tnn.Sequential:
    torch.manual_seed(0)
    return tnn.Sequential(tnn.Flatten(), bnn.QuantLinear(16, 8), bnn.Requant(8), tnn.ReLU(),
                          bnn.QuantLinear(8, 3))


def test_sequential_exports_to_validated_ir_with_layer_names():
    m = _mlp()
    m.input_spec = ir.InputSpec((1, 4, 4), scale=0.5)
    irm = export.to_ir(m, labels=["a", "b", "c"], name="tiny")
    assert [layer.kind for layer in irm.layers] == ["flatten", "linear", "requant", "linear"]
    assert [layer.name for layer in irm.layers] == ["0", "1", "2", "4"]
    assert irm.input.shape == (1, 4, 4) and irm.input.scale == 0.5
    assert irm.labels == ["a", "b", "c"] and irm.name == "tiny"
    assert irm.layers[1].encoding == "4bitsym"
    np.testing.assert_array_equal(irm.layers[1].weight, m[1].integer_weight().numpy())


def test_requant_followed_by_relu_fuses_into_a_clamp_at_zero():
    m = _mlp().eval()
    irm = export.to_ir(m, input=ir.InputSpec((16,)))
    rq = irm.layers[2]
    assert rq.out_min == 0 and rq.out_max == 127
    x = np.random.default_rng(0).integers(-128, 128, (200, 16)).astype(np.int8)
    with torch.no_grad():
        np.testing.assert_array_equal(m(torch.from_numpy(x).float()).numpy(), golden.run(irm, x))
    # without the ReLU the clamp stays symmetric
    m2 = tnn.Sequential(*list(m)[:3])
    assert export.to_ir(m2, input=ir.InputSpec((16,))).layers[-1].out_min == -128


def test_nested_sequentials_flatten_and_inference_no_ops_vanish():
    torch.manual_seed(0)
    m = tnn.Sequential(
        tnn.Sequential(bnn.QuantConv2d(1, 2, 3, padding=1), bnn.ShiftNorm(), tnn.MaxPool2d(2)),
        tnn.Dropout(0.2), tnn.Identity(), tnn.AvgPool2d(2), tnn.Flatten(), bnn.QuantLinear(8, 2))
    irm = export.to_ir(m, input=ir.InputSpec((1, 8, 8)))
    assert [layer.kind for layer in irm.layers] == [
        "conv2d", "shiftnorm", "maxpool2d", "avgpool2d", "flatten", "linear"]
    assert irm.layers[0].name == "0.0" and irm.layers[3].name == "3"


@pytest.mark.parametrize("module, op", [
    (tnn.LSTM(4, 4), "LSTM"),
    (tnn.Linear(16, 3), "Linear"),
    (tnn.Sigmoid(), "Sigmoid"),
    (tnn.MaxPool2d(2, padding=1), "MaxPool2d"),
    (tnn.Flatten(start_dim=0), "Flatten"),
])
def test_unsupported_layer_names_the_layer_and_the_op(module, op):
    m = tnn.Sequential()
    m.add_module("flat", tnn.Flatten())
    m.add_module("rnn", module)
    with pytest.raises(export.ExportError) as e:
        export.to_ir(m, input=ir.InputSpec((16,)))
    msg = str(e.value)
    assert msg.startswith(f"layer 1 'rnn': unsupported op {op}") and "\n" not in msg
    assert isinstance(e.value, BitgenError)


def test_float_linear_error_points_to_the_quantized_layer():
    with pytest.raises(export.ExportError, match="bitgen quantize.*bitgen.nn.QuantLinear"):
        export.to_ir(tnn.Sequential(tnn.Linear(4, 2)), input=ir.InputSpec((4,)))


def test_custom_module_is_traced_and_data_dependent_control_flow_refused():
    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = bnn.QuantLinear(4, 2)

        def forward(self, x):
            return self.fc(x)

    m = export.to_ir(Net(), input=ir.InputSpec((4,)))
    assert m.is_sequential and [layer.kind for layer in m.layers] == ["linear"]

    class Branchy(Net):
        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else self.fc(-x)

    with pytest.raises(export.ExportError, match="cannot trace Branchy with torch.fx") as e:
        export.to_ir(Branchy(), input=ir.InputSpec((4,)))
    assert "\n" not in str(e.value)


def test_input_spec_sources():
    m = tnn.Sequential(tnn.Flatten(), bnn.QuantLinear(16, 2))
    with pytest.raises(export.ExportError, match="input shape is unknown.*--input-shape"):
        export.to_ir(m)
    assert export.to_ir(m, input=ir.InputSpec((4, 4))).input.shape == (4, 4)
    m.input_spec = ir.InputSpec((1, 4, 4), scale=0.25)
    assert export.to_ir(m).input == ir.InputSpec((1, 4, 4), scale=0.25)
    # a bare shape from the command line keeps the scale the model carries
    assert export.to_ir(m, input=ir.InputSpec((1, 4, 4))).input.scale == 0.25
    # a model that starts with a linear layer has an unambiguous shape
    assert export.to_ir(bnn.QuantLinear(7, 2)).input.shape == (7,)


def test_shapes_that_do_not_chain_are_an_export_error():
    m = tnn.Sequential(bnn.QuantLinear(16, 8), bnn.ShiftNorm(), bnn.QuantLinear(9, 2))
    with pytest.raises(export.ExportError, match="layer 2 .*expects 9 inputs, previous layer gives 8"):
        export.to_ir(m)


def test_plain_avgpool_exports_to_the_rounding_ir_pool():
    m = tnn.Sequential(tnn.AvgPool2d(2))
    irm = export.to_ir(m, input=ir.InputSpec((1, 4, 4)))
    assert isinstance(irm.layers[0], ir.AvgPool2d) and irm.layers[0].kernel == (2, 2)
    x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    rounded = bnn.AvgPool2d(2).eval()(torch.from_numpy(x).float()).numpy()
    np.testing.assert_array_equal(rounded, golden.run(irm, x))
