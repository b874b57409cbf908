"""Fixtures for the Python tests (pytest). See kernelutil.py for what they wrap.

Every test session runs in a temporary HOME / JUPYTER_PATH / JUPYTER_DATA_DIR with its
own kernelspecs, written by `build/kernel/loupe install --prefix <tmp>` ("loupe", message
interrupts) and `--name loupe-signal --interrupt-mode signal`; nothing depends on the
user's Jupyter set-up and the kernel's history file lands in the temporary home.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import kernelutil as ku  # noqa: E402

ENV = ku.IsolatedEnv()  # at import: before any test module asks jupyter_client for paths


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lua: needs the loupe kernel (Lua cells)")
    config.addinivalue_line("markers", "browser: drives chromium through JupyterLab")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ku.IS_LOUPE:
        return
    skip = pytest.mark.skip(reason=f"Lua test; LOUPE_TEST_KERNEL={ku.UNDER_TEST}")
    for item in items:
        if "lua" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"kernel under test: {ku.UNDER_TEST} (kernelspecs in {ENV.jupyter_path})"]
    lines += [f"KERNELSPEC INSTALL FAILED: {e}" for e in ENV.errors]
    return lines


def pytest_unconfigure(config: pytest.Config) -> None:
    ENV.cleanup()


@pytest.fixture(scope="session")
def isolated_env() -> ku.IsolatedEnv:
    if ENV.errors:
        pytest.fail("kernelspec install failed:\n" + "\n".join(ENV.errors), pytrace=False)
    return ENV


@pytest.fixture
def make_kernel(isolated_env):
    """Factory: make_kernel(name=KERNEL_MESSAGE, env=None) -> Kernel; all stopped at the end."""
    started: list[ku.Kernel] = []

    def make(name: str = ku.KERNEL_MESSAGE, env: dict | None = None) -> ku.Kernel:
        k = ku.start_kernel(name, env=env)
        started.append(k)
        return k

    yield make
    for k in started:
        try:
            k.stop()
        except Exception as e:  # a test may have killed it on purpose
            print(f"stopping kernel: {e}", file=sys.stderr)


@pytest.fixture
def kernel(make_kernel) -> ku.Kernel:
    """A fresh kernel (message interrupt mode) for one test."""
    return make_kernel()
