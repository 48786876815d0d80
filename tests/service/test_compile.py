import json
import logging
import threading

import pytest
import torch

import service.app
from model.predictor import compiler_found, resolve_precision
from service.app import load_predictor
from service.settings import Settings


def _wait_for_compile() -> None:
    for thread in threading.enumerate():
        if thread.name == "stance-compile":
            thread.join(timeout=300)


def _events(caplog) -> dict[str, dict]:
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == service.app.log.name]
    return {e["event"]: e for e in events if "event" in e}


@pytest.mark.skipif(not compiler_found(), reason="torch.compile needs a C++ compiler")
def test_the_service_compiles_in_the_background(tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger=service.app.log.name)
    predictor = load_predictor(tiny_model_dir, Settings(model_dir=tiny_model_dir, compile="on"))
    assert predictor.precision == resolve_precision("auto", compiled=True)
    assert predictor.predict("Donald Trump praised Acme Corp.").sentences  # answers while compiling
    _wait_for_compile()
    assert predictor.compiled and predictor.compile_status == "compiled"
    assert _events(caplog)["model_compiled"]["model_dir"] == str(tiny_model_dir)


def test_a_failed_compile_keeps_the_eager_path(tiny_model_dir, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler today")

    caplog.set_level(logging.INFO, logger=service.app.log.name)
    monkeypatch.setattr(service.app, "resolve_compile", lambda mode: True)
    monkeypatch.setattr(torch, "compile", broken)  # fails inside StancePredictor.compile, which records it
    predictor = load_predictor(tiny_model_dir, Settings(model_dir=tiny_model_dir, compile="on"))
    _wait_for_compile()
    assert not predictor.compiled and predictor.compile_status == "failed"
    failed = _events(caplog)["compile_failed"]
    assert failed == {"event": "compile_failed", "model_dir": str(tiny_model_dir), "error": "no C++ compiler today"}
    assert predictor.predict("Donald Trump praised Acme Corp.").sentences


def test_compile_setting_from_the_environment(monkeypatch):
    monkeypatch.setenv("STANCE_COMPILE", "on")
    assert Settings().compile == "on"
    monkeypatch.setenv("STANCE_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="Input should be 'auto', 'on' or 'off'"):
        Settings()


def test_the_service_takes_its_int8_kernel_from_the_environment(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("STANCE_INT8_KERNEL", "int_mm")
    settings = Settings(model_dir=tiny_model_dir, precision="int8", compile="off")
    assert settings.int8_kernel == "int_mm"
    predictor = load_predictor(tiny_model_dir, settings)
    assert (predictor.precision, predictor.int8_kernel) == ("int8", "int_mm")
