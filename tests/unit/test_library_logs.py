"""Library chatter during an evaluation goes to a log file, not to the terminal (warnings, library loggers,
llama.cpp's C log lines)."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from kogata.eval.library_logs import capture_library_logs


def test_warnings_and_library_loggers_go_to_the_file(tmp_path, capfd):
    import transformers.utils.logging as tlog

    log = tmp_path / "eval.log"
    before = warnings.showwarning
    root = logging.getLogger("transformers")
    def own_handlers():  # pytest's capture handlers come and go between test phases: compare the others
        return [h for h in root.handlers if not type(h).__module__.startswith("_pytest")]

    handlers_before, propagate_before = own_handlers(), root.propagate
    with capture_library_logs(log, ["transformers"]):
        warnings.warn("kogata-test-runtime-warning", RuntimeWarning, stacklevel=1)
        with np.errstate(over="warn"):
            np.float64(1e300) * np.float64(1e300)  # numpy: "overflow encountered in scalar multiply"
        tlog.get_logger("transformers.kogata_test").warning("kogata-test-transformers-warning")
        logging.getLogger("some.library").warning("kogata-test-library-warning")
    out, err = capfd.readouterr()
    text = log.read_text(encoding="utf-8")
    for needle in ("kogata-test-runtime-warning", "overflow encountered", "kogata-test-transformers-warning",
                   "kogata-test-library-warning"):
        assert needle in text, needle
        assert needle not in out + err, needle
    assert warnings.showwarning is before  # restored
    # transformers' own handlers are back (compared by identity: the stream an earlier test's handler writes to
    # depends on pytest's capture at the time it was made, so the text's destination is not checked here)
    assert own_handlers() == handlers_before and root.propagate == propagate_before
    tlog.get_logger("transformers.kogata_test").error("kogata-after")
    assert "kogata-after" not in log.read_text(encoding="utf-8")


def test_llama_cpp_log_lines_go_to_the_file(tmp_path, capfd, tiny_gemma3_gguf):
    import llama_cpp

    def load():
        llm = llama_cpp.Llama(model_path=str(tiny_gemma3_gguf), n_ctx=256, verbose=False)
        llm.close()

    load()  # without the capture llama-cpp-python prints llama.cpp's warnings (this GGUF has a sliding window)
    assert "llama_kv_cache_iswa" in capfd.readouterr().err
    log = tmp_path / "eval.log"
    with capture_library_logs(log, ["llama_cpp"]):
        load()
    out, err = capfd.readouterr()
    assert "llama_" not in out + err
    text = log.read_text(encoding="utf-8")
    assert "WARNING llama.cpp: llama_kv_cache_iswa: using full-size SWA cache" in text  # level kept, one line each
    assert "llama_model_loader:" in text
