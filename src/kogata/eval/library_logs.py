"""Keep the libraries' own chatter off the terminal during an evaluation: into a log file instead.

Inside :func:`capture_library_logs` (``kogata eval`` wraps its whole run in it, writing ``eval.log`` in the
results folder):

* Python warnings (numpy ``RuntimeWarning``, deprecations …) are routed to :mod:`logging`
  (``logging.captureWarnings``) and written to the file;
* records of every Python logger that reaches the root logger, and of transformers' own library logger
  (whose default stderr handler is switched off for the duration), go to the file;
* llama.cpp's C log lines (``llama_context: …``, ``llama_kv_cache_iswa: …``) are received through
  ``llama_cpp.llama_log_set`` with a callback and written to the file, line by line.

Everything is restored on exit (llama-cpp-python's own log callback included).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the previous message)
_GGML_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONT = 5
LLAMA_LOGGER = "llama.cpp"


class _LlamaLogSink:
    """Joins llama.cpp's log fragments into lines and logs each complete line."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self.buffer = ""
        self.level = logging.INFO

    def write(self, level: int, text: str) -> None:
        if level != _GGML_CONT:
            self.level = _GGML_LEVELS.get(level, logging.INFO)
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            if line.strip():
                self.logger.log(self.level, line)

    def flush(self) -> None:
        if self.buffer.strip():
            self.logger.log(self.level, self.buffer)
        self.buffer = ""


@contextlib.contextmanager
def _llama_cpp_logs(handler: logging.Handler) -> Iterator[None]:
    if importlib.util.find_spec("llama_cpp") is None:
        yield
        return
    import llama_cpp

    logger = logging.getLogger(LLAMA_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    sink = _LlamaLogSink(logger)

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        try:
            sink.write(int(level), text.decode("utf-8", errors="replace") if text else "")
        except Exception:  # noqa: BLE001 - an exception must never cross back into C
            pass

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield
    finally:
        sink.flush()
        previous = getattr(getattr(llama_cpp, "_logger", None), "llama_log_callback", None)
        if previous is not None:
            llama_cpp.llama_log_set(previous, ctypes.c_void_p(0))
        logger.removeHandler(handler)
        # ``callback`` stays referenced by this frame until here, after llama.cpp stopped using it


@contextlib.contextmanager
def _transformers_logs(handler: logging.Handler) -> Iterator[None]:
    if importlib.util.find_spec("transformers") is None:
        yield
        return
    import transformers.utils.logging as tlog

    verbosity = tlog.get_verbosity()
    tlog.set_verbosity(min(verbosity, tlog.WARNING))  # the file keeps warnings even under TRANSFORMERS_VERBOSITY=error
    tlog.disable_default_handler()
    tlog.add_handler(handler)
    try:
        yield
    finally:
        tlog.remove_handler(handler)
        tlog.enable_default_handler()
        tlog.set_verbosity(verbosity)


@contextlib.contextmanager
def capture_library_logs(path: Path, libraries: Iterable[str] = ("transformers", "llama_cpp")) -> Iterator[Path]:
    """Write warnings, library log records and llama.cpp's C log to ``path`` instead of the terminal.

    ``libraries`` names the libraries whose own log channels to take over (``transformers``,
    ``llama_cpp``); one that is not installed is skipped (and never imported when not listed).
    """
    path = Path(path)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    py_warnings = logging.getLogger("py.warnings")
    saved_showwarning, saved_propagate = warnings.showwarning, py_warnings.propagate
    wanted = set(libraries)
    with contextlib.ExitStack() as stack:
        stack.callback(handler.close)  # runs last
        stack.callback(sys.stderr.flush)
        root.addHandler(handler)
        stack.callback(root.removeHandler, handler)
        py_warnings.addHandler(handler)
        py_warnings.propagate = False
        logging.captureWarnings(True)

        def restore_warnings() -> None:
            logging.captureWarnings(False)
            warnings.showwarning = saved_showwarning
            py_warnings.removeHandler(handler)
            py_warnings.propagate = saved_propagate

        stack.callback(restore_warnings)
        if "transformers" in wanted:
            stack.enter_context(_transformers_logs(handler))
        if "llama_cpp" in wanted:
            stack.enter_context(_llama_cpp_logs(handler))
        yield path
