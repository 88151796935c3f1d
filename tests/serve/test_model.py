"""Loading a model (serve/model.py): what a bad file is blamed for."""

from __future__ import annotations

import pytest


def test_a_file_that_is_no_model_is_blamed_not_the_gpu(tmp_path, caplog) -> None:
    import logging

    from sim2real.serve.model import ModelError, load_model

    fake = tmp_path / "fake.onnx"
    fake.write_text("hello")
    caplog.set_level(logging.INFO)
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        load_model(fake, "fake", 1, "auto")
    assert "CUDA provider unusable" not in caplog.text
