"""The paper's DMD JSON (000 A.2) and the Parquet trace: round trips and one-line errors."""

import json

import numpy as np
import pandas as pd
import pytest

from edgesim.studies.dmd.records import read_dmd_json, read_trace_parquet, write_dmd_json, write_trace_parquet
from profilers.errors import EdgesimError


def trace(n=5, d=4):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"sample_id": [f"path/img{i}.jpg" for i in range(n)], "label": rng.integers(0, 2, n),
                       "edge_pred": rng.integers(0, 2, n), "edge_max_prob": rng.random(n), "edge_margin": rng.random(n),
                       "edge_entropy": rng.random(n), "cloud_pred": rng.integers(0, 2, n), "cloud_max_prob": rng.random(n)})
    df["agree"] = df.edge_pred == df.cloud_pred
    df["split"] = ["train"] * (n - 2) + ["test"] * 2
    df["hidden"] = list(rng.normal(size=(n, d)).astype(np.float32))
    df.attrs["hidden_layer"] = "classifier.2"
    return df


def test_json_exact_paper_format_and_round_trip(tmp_path):
    df = trace()
    write_dmd_json(df, tmp_path / "d.json")
    raw = json.loads((tmp_path / "d.json").read_text())
    assert isinstance(raw, list) and set(raw[0]) == {"image_path", "last_hidden_layer", "label"}
    assert raw[0]["image_path"] == "path/img0.jpg" and raw[0]["label"] in (0, 1) and len(raw[0]["last_hidden_layer"]) == 4
    back = read_dmd_json(tmp_path / "d.json")
    assert back.agree.tolist() == df.agree.tolist()
    assert np.allclose(np.stack(back.hidden), np.stack(df.hidden))


@pytest.mark.parametrize("content,match", [
    ("[{", "not valid JSON at line 1"),
    ('{"a": 1}', "expected a list of records"),
    ('[{"image_path": "a", "last_hidden_layer": [1.0], "label": 1}, {"image_path": "b", "label": 0}]', r"record 1: missing field\(s\) \['last_hidden_layer'\]"),
    ('[{"image_path": "a", "last_hidden_layer": [1.0, 2.0], "label": 1}, {"image_path": "b", "last_hidden_layer": [1.0], "label": 0}]', "record 1: .*ragged"),
    ('[{"image_path": "a", "last_hidden_layer": [1.0], "label": 2}]', "record 0: 'label' must be 0 or 1"),
    ('[{"image_path": "a", "last_hidden_layer": ["x"], "label": 1}]', "record 0: 'last_hidden_layer' must be"),
])
def test_bad_json_names_file_and_record(tmp_path, content, match):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(EdgesimError, match=match) as err:
        read_dmd_json(f)
    assert "bad.json" in str(err.value) and "\n" not in str(err.value)


def test_parquet_round_trip_in_row_groups_with_fixed_size_hidden(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = trace(n=11, d=3)
    write_trace_parquet(df, tmp_path / "t.parquet", row_group_rows=4)
    meta = pq.ParquetFile(tmp_path / "t.parquet")
    assert meta.metadata.num_row_groups == 3
    assert pa.types.is_fixed_size_list(meta.schema_arrow.field("hidden").type)
    back = read_trace_parquet(tmp_path / "t.parquet")
    assert back.attrs["hidden_layer"] == "classifier.2"
    pd.testing.assert_frame_equal(back.drop(columns="hidden"), df.drop(columns="hidden"), check_dtype=False)
    assert np.allclose(np.stack(back.hidden), np.stack(df.hidden))
    assert not list(tmp_path.glob(".*tmp"))


def test_parquet_missing_columns_and_ragged_hidden(tmp_path):
    df = trace()
    write_trace_parquet(df.drop(columns=["cloud_pred"]), tmp_path / "t.parquet")
    with pytest.raises(EdgesimError, match=r"missing column\(s\) \['cloud_pred'\]"):
        read_trace_parquet(tmp_path / "t.parquet")
    df.at[1, "hidden"] = np.zeros(2, np.float32)
    with pytest.raises(EdgesimError, match="different widths"):
        write_trace_parquet(df, tmp_path / "r.parquet")
    with pytest.raises(EdgesimError, match="file not found"):
        read_trace_parquet(tmp_path / "none.parquet")
