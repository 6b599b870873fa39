"""keras_recu.profile: larq's summary table for Keras 3 models, checked against hand counts."""

import keras
import pytest

from keras_recu.layers import QuantConv2D, QuantDense, ReCUConv2D
from keras_recu.profile import ModelProfile, summary


def _quiet(text):
    pass


def _example_model():
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = ReCUConv2D(16, 3, padding="same", name="recu")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = QuantConv2D(
        32, 3, strides=2, padding="same", input_quantizer="recu_input_sign",
        kernel_quantizer="recu_sign", use_bias=False, name="qconv",
    )(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="dense")(x)
    return keras.Model(inputs, outputs, name="example")


def _rows(profile):
    return {lp.name: lp for lp in profile.layer_profiles}


def test_example_model_rows():
    profile = summary(_example_model(), print_fn=_quiet)
    rows = _rows(profile)
    assert list(rows) == ["image", "conv", "bn1", "recu", "bn2", "qconv", "gap", "dense"]

    assert rows["recu"].input_precision == 1 and rows["qconv"].input_precision == 1
    for name in ("image", "conv", "bn1", "bn2", "gap", "dense"):
        assert rows[name].input_precision is None

    assert rows["conv"].output_shape == (None, 16, 16, 16)
    assert rows["conv"].output_shape_str == "(-1, 16, 16, 16)"
    assert rows["qconv"].output_shape == (None, 8, 8, 32)
    assert rows["dense"].output_shape == (None, 10)

    # (1-bit, 32-bit) parameters per row.
    expected_params = {
        "image": (0, 0),
        "conv": (0, 3 * 3 * 3 * 16),
        "bn1": (0, 2 * 16),  # beta and gamma fold into moving mean / variance
        "recu": (3 * 3 * 16 * 16, 16),  # the kernel is binary, alpha is float
        "bn2": (0, 2 * 16),
        "qconv": (3 * 3 * 16 * 32, 0),
        "gap": (0, 0),
        "dense": (0, 32 * 10 + 10),
    }
    for name, (binary, full) in expected_params.items():
        row = rows[name]
        assert (row.weight_count(bitwidth=1), row.weight_count(bitwidth=32)) == (binary, full), name
        assert row.weight_count() == binary + full
        assert row.memory == binary + 32 * full, name
    # The BN weights kept are the moving statistics: non-trainable.
    assert rows["bn1"].weight_count(trainable=True) == 0
    assert rows["bn1"].weight_count(trainable=False) == 32

    # (1-bit, 32-bit) MACs per row; alpha and bias bring none.
    expected_macs = {
        "image": (0, 0),
        "conv": (0, 3 * 3 * 3 * 16 * 16 * 16),
        "bn1": (0, 0),
        "recu": (3 * 3 * 16 * 16 * 16 * 16, 0),
        "bn2": (0, 0),
        "qconv": (3 * 3 * 16 * 32 * 8 * 8, 0),
        "gap": (0, 0),
        "dense": (0, 32 * 10),
    }
    for name, (binary, full) in expected_macs.items():
        assert (rows[name].op_count(1), rows[name].op_count(32)) == (binary, full), name


def test_example_model_totals_and_tau():
    model = _example_model()
    profile = summary(model, print_fn=_quiet)

    binary = 2304 + 4608
    full = 432 + 32 + 16 + 32 + 330
    assert profile.weight_count(bitwidth=1) == binary == 6912
    assert profile.weight_count(bitwidth=32) == full == 842
    assert profile.weight_count() == 7754
    assert profile.weight_count(trainable=True) == 432 + 2304 + 16 + 4608 + 330
    assert profile.weight_count(trainable=False) == 64
    assert profile.unique_param_bitwidths == [1, 32]

    # The two tau variables (ReCUConv2D's and qconv's kernel quantizers) are
    # weights of the model, but neither parameters nor memory.
    taus = [w for w in model.weights if w.name == "tau"]
    assert len(taus) == 2 and all(w.shape == () for w in taus)
    assert model.count_params() == 7754 + 2 * 32 + 2  # + fused BN beta/gamma + tau
    counted = [w.name for lp in profile.layer_profiles for w in lp.weight_profiles]
    assert "tau" not in [name.split("/")[-1] for name in counted]

    assert profile.memory == 6912 + 32 * 842 == 33856
    assert profile.fp_equivalent_memory == 32 * 7754
    assert profile.compression_ratio == pytest.approx(33856 / (32 * 7754))
    assert profile.int8_fp_weights_memory == 6912 + 8 * 842

    macs_1 = 589824 + 294912
    macs_32 = 110592 + 320
    assert profile.op_count(precision=1) == macs_1
    assert profile.op_count(precision=32) == macs_32
    assert profile.op_count() == macs_1 + macs_32
    assert profile.unique_op_precisions == [1, 32]

    table = profile.generate_table()
    assert table[-1] == ["Total", "", "", 6912, 842, pytest.approx(33856 / 8192), macs_1, macs_32]
    summary_rows = dict(profile.generate_summary())
    assert summary_rows["Total params"] == "7.75 k"
    assert summary_rows["Non-trainable params"] == "64"
    assert summary_rows["Model size"] == f"{33856 / 8 / 1024:.2f} KiB"
    assert summary_rows["Float-32 Equivalent"] == f"{7754 * 4 / 1024:.2f} KiB"
    assert summary_rows["Ratio of MACs that are binarized"] == f"{macs_1 / (macs_1 + macs_32):.4f}"


def test_print_fn_gets_both_tables():
    printed = []
    summary(_example_model(), print_fn=printed.append)
    assert len(printed) == 2
    stats, totals = printed
    assert stats.startswith("+example stats-")
    for text in ("Layer", "Input prec.", "(bit)", "Outputs", "# 1-bit", "# 32-bit",
                 "Memory", "(kB)", "1-bit MACs", "32-bit MACs", "Total"):
        assert text in stats, text
    for name in ("conv", "bn1", "recu", "bn2", "qconv", "gap", "dense"):
        assert f"| {name} " in stats
    recu_line = next(line for line in stats.splitlines() if line.startswith("| recu "))
    assert recu_line.split()[2:] == ["1", "(-1,", "16,", "16,", "16)", "2304", "16",
                                     f"{(2304 + 32 * 16) / 8192:.2f}", "589824", "0", "|"]
    assert totals.startswith("+example summary-")
    for text in ("Total params", "Trainable params", "Non-trainable params", "Model size",
                 "Float-32 Equivalent", "Compression Ratio of Memory", "Number of MACs",
                 "Ratio of MACs that are binarized"):
        assert text in totals, text
    assert "0.14" in totals  # 33856 / 248128


def test_include_macs_false_and_default_print(capsys):
    summary(_example_model(), include_macs=False)
    out = capsys.readouterr().out
    assert "MACs" not in out
    assert "example stats" in out and "Compression Ratio of Memory" in out


# terminaltables comes with larq (the `larq` extra), installed beside TensorFlow.
@pytest.mark.tf_only
def test_layout_is_larqs_terminaltables_layout():
    import terminaltables
    profile = summary(_example_model(), print_fn=_quiet)

    def reference(rows, title, layer_table):
        table = terminaltables.AsciiTable(
            [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows],
            title=title,
        )
        table.inner_column_border = False
        table.inner_heading_row_border = layer_table
        if layer_table:
            table.inner_footing_row_border = True
            table.justify_columns = {i: "right" for i in range(1, len(rows[0]))}
        return table.table

    assert profile.stats_table() == reference(profile.generate_table(), "example stats", True)
    summary_text = reference(profile.generate_summary(), "example summary", False)
    assert profile.summary_table() == summary_text


def test_binary_kernel_with_float_input_counts_32_bit_macs():
    inputs = keras.Input((6, 6, 2))
    outputs = QuantConv2D(4, 3, kernel_quantizer="recu_sign", use_bias=False, name="q")(inputs)
    profile = summary(keras.Model(inputs, outputs), print_fn=_quiet)
    row = _rows(profile)["q"]
    assert row.input_precision is None
    assert row.weight_count(bitwidth=1) == 3 * 3 * 2 * 4
    # max(32 for the float input, 1 for the kernel) = 32.
    assert row.op_count(32) == 3 * 3 * 2 * 4 * 4 * 4
    assert row.op_count(1) == 0
    assert "Ratio of MACs that are binarized" not in dict(profile.generate_summary())


def test_any_precision_attribute_counts():
    class TwoBit:
        precision = 2

        def __call__(self, x):
            return x

    inputs = keras.Input((5,))
    outputs = QuantDense(3, input_quantizer=TwoBit(), kernel_quantizer=TwoBit(), name="q")(inputs)
    profile = summary(keras.Model(inputs, outputs), print_fn=_quiet)
    row = _rows(profile)["q"]
    assert row.input_precision == 2
    assert (row.weight_count(bitwidth=2), row.weight_count(bitwidth=32)) == (15, 3)
    assert row.op_count(2) == 15
    assert dict(profile.generate_summary())["Ratio of MACs that are ternarized"] == "1.0000"


def test_nested_model_is_one_row_counting_everything_inside():
    inner = keras.Sequential(
        [
            keras.Input((8,)),
            QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="recu_sign", name="qd"),
            keras.layers.BatchNormalization(name="bn"),
        ],
        name="inner",
    )
    inputs = keras.Input((8,), name="x")
    x = inner(inputs)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs, name="outer")
    profile = summary(model, print_fn=_quiet)
    rows = _rows(profile)
    assert list(rows) == ["x", "inner", "head"]  # top-level layers only
    nested = rows["inner"]
    assert isinstance(nested, ModelProfile)
    assert nested.input_precision == 1  # its first layer's
    assert nested.output_shape == (None, 4)
    # Kernel 8 * 4 binary; bias 4 and BN 2 * 4 float; recu_sign's tau left out.
    assert [w for w in inner.weights if w.name == "tau"]
    assert nested.weight_count(bitwidth=1) == 32
    assert nested.weight_count(bitwidth=32) == 4 + 8
    assert nested.op_count(1) == 32 and nested.op_count(32) == 0
    assert profile.weight_count() == 32 + 12 + 4 * 2 + 2
    assert profile.op_count(precision=1) == 32 and profile.op_count(precision=32) == 8


def test_nested_model_and_layer_called_twice_count_their_macs_twice():
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="d")], name="inner")
    a, b = keras.Input((8,)), keras.Input((8,))
    shared = keras.layers.Dense(3, name="shared")
    outputs = keras.layers.Concatenate(name="cat")([shared(inner(a)), shared(inner(b))])
    profile = summary(keras.Model([a, b], outputs), print_fn=_quiet)
    rows = _rows(profile)
    assert rows["inner"].weight_count() == 8 * 4 + 4  # shared weights count once
    assert rows["inner"].op_count(32) == 2 * 8 * 4
    assert rows["shared"].weight_count() == 4 * 3 + 3
    assert rows["shared"].op_count(32) == 2 * 4 * 3
    assert rows["shared"].output_shape == (None, 3)
    assert rows["cat"].output_shape == (None, 6)


def test_subclassed_model_uses_built_shapes():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.conv = QuantConv2D(4, 3, input_quantizer="ste_sign",
                                    kernel_quantizer="recu_sign", name="qc")
            self.flat = keras.layers.Flatten(name="flat")
            self.head = keras.layers.Dense(3, name="head")
            self.scale = self.add_weight(shape=(2,), name="scale")

        def call(self, x):
            return self.head(self.flat(self.conv(x)))

    model = Net()
    model(keras.ops.zeros((2, 6, 6, 2)))
    profile = summary(model, print_fn=_quiet)
    rows = _rows(profile)
    assert rows["qc"].output_shape == (None, 4, 4, 4)
    assert rows["qc"].op_count(1) == 3 * 3 * 2 * 4 * 4 * 4
    assert rows["head"].op_count(32) == 64 * 3
    assert rows["net (own weights)"].weight_count(bitwidth=32) == 2
    assert profile.weight_count() == 72 + 4 + 64 * 3 + 3 + 2


def test_unknown_output_shape_is_question_mark():
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(2, 3, name="c")(inputs)
    profile = summary(keras.Model(inputs, outputs), print_fn=_quiet)
    row = _rows(profile)["c"]
    assert row.output_shape_str == "(-1, -1, -1, 2)"
    assert row.op_count() is None and row.weight_count() == 3 * 3 * 3 * 2 + 2
    assert profile.op_count() == 0
    assert dict(profile.generate_summary())["Layers with unknown MACs"] == "1"


def test_unbuilt_model_raises():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="not built.*build"):
        summary(model, print_fn=_quiet)
    model.build((None, 5))
    assert summary(model, print_fn=_quiet).weight_count() == 18


def test_non_keras3_model_raises():
    with pytest.raises(TypeError, match="Keras 3"):
        summary(keras.layers.Dense(3), print_fn=_quiet)


def test_op_count_rejects_other_op_types():
    profile = summary(_example_model(), print_fn=_quiet)
    with pytest.raises(ValueError, match="mac"):
        profile.op_count(op_type="add")


def test_summary_is_exported_at_package_level():
    import keras_recu
    from keras_recu import profile

    assert keras_recu.summary is profile.summary
