"""Generates the session.v1 stubs (session_client/_pb, from ../../proto) before setuptools runs.

All metadata is in pyproject.toml. The generation runs whenever the build backend loads this file
(egg_info needs the package directory to exist before build_py); grpcio-tools is a build
requirement, so it is installed by then.
"""

import importlib.util
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent

spec = importlib.util.spec_from_file_location("gen_stubs", HERE / "gen_stubs.py")
gen_stubs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen_stubs)
gen_stubs.generate(HERE / "session_client" / "_pb")

setup()
