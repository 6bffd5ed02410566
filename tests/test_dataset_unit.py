"""Unit tests of the dataset's pure parts: grid layout, coordinates, chunks, cell checks."""

from __future__ import annotations

import enum
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_gold.dataset import cells, grid, meta
from pytest_gold.dataset.cells import GroupSchema
from pytest_gold.dataset.grid import CaseParams, build_coordinate, build_layouts, chunk_shape
from pytest_gold.protocol.serialization import from_jsonable, to_jsonable


def _case(nodeid: str, function: str = "t.py::test_f", **params) -> CaseParams:
    return CaseParams(nodeid, function, function.rsplit("::", 1)[-1], params, {})


# -- coordinates -----------------------------------------------------------------------------


def test_coordinate_keeps_scalar_types_and_collection_order():
    ints = build_coordinate("n", [("a", 3, 0), ("b", 1, 1), ("c", 3, 0)])
    assert ints.values.dtype == np.int64 and ints.values.tolist() == [3, 1]
    assert ints.index == {"a": 0, "b": 1, "c": 0}
    numbers = build_coordinate("x", [("a", 1, 0), ("b", 2.5, 1), ("c", np.float32(0.5), 2)])
    assert numbers.values.dtype == np.float64 and numbers.values.tolist() == [1.0, 2.5, 0.5]
    flags = build_coordinate("f", [("a", True, 0), ("b", False, 1)])
    assert flags.values.dtype == bool
    words = build_coordinate("s", [("a", "ocean", 0), ("b", "land", 1)])
    assert words.values.tolist() == ["ocean", "land"] and not words.note


def test_nan_parameters_share_one_coordinate_value():
    coordinate = build_coordinate("x", [("a", math.nan, 0), ("b", 1.0, 1), ("c", math.nan, 2)])
    assert len(coordinate.values) == 2 and coordinate.index["a"] == coordinate.index["c"] == 0


class Colour(enum.Enum):
    RED = 1


def model_a() -> None: ...


def test_objects_become_pytest_default_ids_and_mixes_become_strings():
    obj = object()
    values = [("a", {"unhashable": [1]}, 0), ("b", obj, 1), ("c", Colour.RED, 2)]
    values += [("d", model_a, 3), ("e", None, 4), ("f", 7, 5)]
    coordinate = build_coordinate("p", values)
    assert coordinate.values.tolist() == ["p0", "p1", "Colour.RED", "model_a", "None", "7"]
    assert "labels" in coordinate.note


def test_objects_with_the_same_name_are_numbered():
    first, second = (lambda: 1), (lambda: 2)
    coordinate = build_coordinate("fn", [("a", first, 0), ("b", second, 1)])
    assert coordinate.values.tolist() == ["fn0", "fn1"]


# -- layouts ---------------------------------------------------------------------------------


def test_layout_one_dimension_per_argument_and_missing_cells():
    cases = [
        _case("t.py::test_f[a-1]", surface="a", channel=1),
        _case("t.py::test_f[b-2]", surface="b", channel=2),  # not a full product: 2 of 4
        _case("t.py::test_g", function="t.py::test_g"),
    ]
    layouts = build_layouts(cases)
    f, g = layouts["test_f"], layouts["test_g"]
    assert f.dims == ("surface", "channel") and f.shape == (2, 2)
    assert f.cells == {"t.py::test_f[a-1]": (0, 0), "t.py::test_f[b-2]": (1, 1)}
    assert g.dims == () and g.shape == () and g.cells == {"t.py::test_g": ()}


def test_cases_on_the_same_cell_and_without_a_dimension_are_not_placed():
    cases = [
        _case("t.py::test_f[1a]", x=1),
        _case("t.py::test_f[1b]", x=1),
        _case("t.py::test_f[odd]"),
    ]
    layout = build_layouts(cases)["test_f"]
    assert layout.cells == {"t.py::test_f[1a]": (0,)}
    assert "same as those of t.py::test_f[1a]" in layout.unplaced["t.py::test_f[1b]"]
    assert "no value for 'x'" in layout.unplaced["t.py::test_f[odd]"]


def test_group_names_are_short_unique_and_path_safe():
    functions = [
        ("tests/a/test_x.py::test_f", "test_f"),
        ("tests/b/test_x.py::test_f", "test_f"),
        ("tests/a/test_y.py::TestK::test_f", "test_f"),
        ("tests/a/test_y.py::test_g", "test_g"),
        ("tests/a/test_y.py::test_h[weird:id/x]", "test_h[weird:id/x]"),
    ]
    names = grid._group_names(functions)
    assert names["tests/a/test_y.py::test_g"] == "test_g"
    assert len(set(names.values())) == len(functions)
    assert names["tests/a/test_y.py::TestK::test_f"] == "TestK.test_f"
    assert names["tests/a/test_x.py::test_f"] == "a.test_x.test_f"
    assert all(":" not in name and "/" not in name for name in names.values())


@given(
    shape=st.lists(st.integers(1, 40), min_size=0, max_size=4),
    target=st.integers(1, 5000),
)
def test_chunks_are_contiguous_and_about_the_target(shape, target):
    chunks = chunk_shape(shape, target)
    assert len(chunks) == len(shape)
    assert all(1 <= c <= n for c, n in zip(chunks, shape, strict=True))
    assert math.prod(chunks) <= max(target, 1) or all(c == 1 for c in chunks[:-1])
    # Contiguous in C order: after the first partial axis, every later axis is whole.
    partial = [i for i, (c, n) in enumerate(zip(chunks, shape, strict=True)) if c < n]
    if partial:
        assert all(chunks[i] == shape[i] for i in range(partial[-1] + 1, len(shape)))
        assert all(chunks[i] == 1 for i in range(partial[0]))


def test_fit_to_stored_maps_cells_onto_a_larger_stored_grid():
    layout = build_layouts([_case("t.py::test_f[b]", s="b")])["test_f"]
    fitted = grid.fit_to_stored(layout, {"s": np.array(["a", "b", "c"], dtype=object)}, (3,))
    assert fitted.cells == {"t.py::test_f[b]": (1,)} and fitted.shape == (3,)
    with pytest.raises(ValueError, match="no cells for: 'z'"):
        grid.fit_to_stored(
            build_layouts([_case("t.py::test_f[z]", s="z")])["test_f"],
            {"s": np.array(["a"], dtype=object)},
            (1,),
        )
    with pytest.raises(ValueError, match=r"dimensions are \(t\) in the store"):
        grid.fit_to_stored(layout, {"t": np.array([1])}, (1,))


# -- cells -----------------------------------------------------------------------------------


def test_first_case_fixes_a_variable_and_later_cases_must_agree():
    schema = GroupSchema(("channel",))
    first = schema.prepare("c1", {"tb": 1.5, "wf": np.zeros(3, np.float32)}, None)
    assert not first.errors and [s.name for s in first.new_variables] == ["tb", "wf"]
    assert (
        schema.variables["wf"].dims == ("wf_dim0",) and schema.variables["wf"].dtype == np.float32
    )
    later = schema.prepare("c2", {"tb": 2, "wf": np.zeros(4, np.float32)}, None)
    assert later.values["tb"] == 2.0  # an int into a float variable is fine
    (error,) = later.errors
    assert error.startswith("gold_record['wf']: its shape is (4,) here, but (3,) in c1")
    text = schema.prepare("c3", {"tb": "warm"}, None).errors
    assert text == ["gold_record['tb']: it is str here, but the variable is float64 (first "
                    "recorded by c1)"]  # fmt: skip
    wider = schema.prepare("c4", {"wf": np.zeros(3, np.float64)}, None).errors
    assert "float64 here, but the variable is float32" in wider[0]


def test_names_that_clash_are_refused():
    schema = GroupSchema(("channel", "host"))
    assert schema.cell_names["host"] == "gold_host"  # the parameter keeps its name
    prepared = schema.prepare(
        "c1", {"channel": 1.0, "outcome": "x", "gold_host": "h", "fine": 1}, None
    )
    assert [e.split(":")[0] for e in prepared.errors] == [
        "gold_record['channel']",
        "gold_record['outcome']",
        "gold_record['gold_host']",
    ]
    assert list(prepared.values) == ["fine"]


def test_values_that_cannot_be_a_variable():
    schema = GroupSchema(())
    prepared = schema.prepare(
        "c1", {"d": {"a": 1}, "ragged": [[1], [1, 2]], "obj": object(), "c": 1j, "none": None}, None
    )
    assert len(prepared.errors) == 4 and not prepared.values
    assert "dict cannot be a variable" in prepared.errors[0]
    assert "not a regular array" in prepared.errors[1]
    assert "builtins.object is not a number" in prepared.errors[2]
    assert "complex128 cannot be stored" in prepared.errors[3]


def test_dims_coords_and_attrs():
    schema = GroupSchema(("channel",))
    heights = np.arange(4) * 1000.0
    layout = {
        "dims": {"wf": ["layer"], "t": ["layer"]},
        "coords": {"layer": heights},
        "attrs": {"wf": {"units": "1/km"}, "layer": {"units": "m"}},
    }
    prepared = schema.prepare("c1", {"wf": np.ones(4), "t": np.ones(4)}, layout)
    assert not prepared.errors
    (layer,) = prepared.new_dims
    assert layer.name == "layer" and layer.coord.tolist() == heights.tolist()
    assert layer.attrs == {"units": "m"} and schema.variables["wf"].attrs == {"units": "1/km"}
    other = {"dims": {"wf": ["layer"]}, "coords": {"layer": heights + 1}}
    assert (
        "differs from the coordinate set by c1"
        in schema.prepare("c2", {"wf": np.ones(4)}, other).errors[0]
    )
    bad = schema.prepare("c3", {"u": np.ones(5)}, {"dims": {"u": ["layer"]}}).errors
    assert "'layer' has 5 elements here, but 4 in c1" in bad[0]
    wrong = schema.prepare("c4", {"v": np.ones(2)}, {"dims": {"v": ["a", "b"]}}).errors
    assert "names 2 dimensions, but the value has 1" in wrong[0]
    grid_dim = schema.prepare("c5", {"w": np.ones(2)}, {"dims": {"w": ["channel"]}}).errors
    assert "is a parametrize argument" in grid_dim[0]


def test_storage_encodings_never_fill_with_zero():
    assert cells.fill_value("int", np.dtype(np.int64)) == np.iinfo(np.int64).min
    assert cells.fill_value("int", np.dtype(np.uint8)) == 255
    assert cells.fill_value("bool", np.dtype(bool)) == -1
    assert math.isnan(cells.fill_value("float", np.dtype(np.float32)))
    schema = GroupSchema(())
    assert schema.prepare("c", {"ok": True}, None).values["ok"].dtype == np.int8


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(["<f4", "<f8", "<i2", "<i8", "|b1", "<u4"]))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    size = math.prod(shape)
    kind = np.dtype(dtype).kind
    if kind == "f":
        element = st.floats(allow_nan=True, allow_infinity=True, width=32)
    elif kind == "b":
        element = st.booleans()
    else:
        element = st.integers(0, 1000)
    return np.array(draw(st.lists(element, min_size=size, max_size=size)), dtype=dtype).reshape(
        shape
    )


@given(value=arrays())
def test_arrays_cross_the_wire_with_dtype_and_shape(value):
    """What a worker records arrives at the controller as the same array."""
    layout = meta.record_layout({"v": value}, {}, {}, {})
    sent = json.loads(json.dumps(to_jsonable({"value": value, "layout": layout})))
    received = from_jsonable(sent)
    array = cells.as_array(received["value"], received["layout"]["types"]["v"])
    assert array.dtype == value.dtype and array.shape == value.shape
    np.testing.assert_array_equal(array, value)


def test_show_names_the_per_cell_variables_of_the_schema():
    from pytest_gold.dataset.show import CELL_VARIABLE_NAMES

    assert CELL_VARIABLE_NAMES == tuple(name for name, _ in cells.CELL_VARIABLES)
