"""Registry: decorator, lookup, patterns, entry-point plugins (real dist-info, no patching)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from featbench import list_classifiers, list_datasets, list_extractors, register_extractor
from featbench.errors import ConfigError, UnknownNameError
from featbench.extractors import Extractor, ExtractorSpec
from featbench.registry import EXTRACTORS, Registry

ROOT = Path(__file__).resolve().parents[1]


def test_builtins_listed_with_patterns():
    assert {"pixels", "hog"} <= set(list_extractors())
    assert list_extractors("h*") == [n for n in list_extractors() if n.startswith("h")]
    assert "hog" in list_extractors("h*") and "pixels" not in list_extractors("h*")
    assert {"linear-svm", "rbf-svm", "logreg"} <= set(list_classifiers())
    assert {"digits", "faces", "textures", "folder", "idx", "opencv-digits", "keras"} <= set(list_datasets())


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown extractor 'hgo'; did you mean 'hog'(, '[^']+')*\?"):
        EXTRACTORS.get("hgo")


def test_decorator_registers_and_refuses_duplicates():
    @register_extractor("test-registry-mean")
    class Mean(Extractor):
        """Mean intensity.

        References
        ----------
        none
        """

        spec = ExtractorSpec(family="classical", color="gray", description="mean", references=("-",))

        def _transform_one(self, image):
            return [image.mean()]

    try:
        assert EXTRACTORS.get("test-registry-mean") is Mean
        with pytest.raises(Exception, match="already registered"):
            register_extractor("test-registry-mean")(type("Other", (Extractor,), {}))
    finally:
        EXTRACTORS.unregister("test-registry-mean")
    assert "test-registry-mean" not in list_extractors()


def test_broken_entry_point_is_unavailable_not_fatal(tmp_path, monkeypatch):
    _dist_info(tmp_path, "brokenplugin", "[featbench.extractors]\nbroken-thing = featbench_no_such_module:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("extractor", "featbench.extractors", [])
    reg.register("fine", obj=object)
    assert reg.list() == ["fine"]  # the broken plugin is not listed as available ...
    assert "broken-thing" in reg.unavailable()
    assert "No module named" in reg.unavailable()["broken-thing"].reason
    with pytest.raises(UnknownNameError, match="broken-thing.*unavailable"):
        reg.get("broken-thing")


PLUGIN = '''
"""A third-party extractor package: no featbench decorator, found only by its entry point."""
import numpy as np
from featbench.extractors import Extractor, ExtractorSpec


class QuadrantMeans(Extractor):
    """Mean intensity of the four image quadrants.

    References
    ----------
    .. [1] None; a test plugin.
    """

    spec = ExtractorSpec(family="classical", color="gray", description="quadrant means (plugin)",
                         references=("test",))

    def _transform_one(self, image):
        g = image if image.ndim == 2 else image.mean(axis=2)
        h, w = g.shape[0] // 2, g.shape[1] // 2
        return [g[:h, :w].mean(), g[:h, w:].mean(), g[h:, :w].mean(), g[h:, w:].mean()]
'''


def _dist_info(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_entry_point_plugin_listed_and_runs_from_config(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "fb_quadrants.py").write_text(PLUGIN)
    _dist_info(site, "fb_quadrants", "[featbench.extractors]\nquadrant-means = fb_quadrants:QuadrantMeans\n"
                                     "broken-plugin = fb_no_such_module:Nope\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "FEATBENCH_CACHE": str(tmp_path / "cache")}
    listed = subprocess.run([sys.executable, "-m", "featbench", "list", "extractors"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if "quadrant-means" in ln)
    assert "quadrant means (plugin)" in line and "available" in line
    broken = next(ln for ln in listed.stdout.splitlines() if "broken-plugin" in ln)
    assert "unavailable" in broken and "fb_no_such_module" in broken
    assert any(ln.split()[0] == "hog" for ln in listed.stdout.splitlines() if ln.strip())

    cfg = tmp_path / "plugin.toml"
    cfg.write_text(textwrap.dedent("""
        name = "plugin"
        [protocol]
        repeats = 1
        [[datasets]]
        name = "digits"
        limit_per_class = 15
        [[extractors]]
        name = "quadrant-means"
        [[classifiers]]
        name = "logreg"
        C = [1.0]
    """))
    out = tmp_path / "out"
    ran = subprocess.run([sys.executable, "-m", "featbench", "run", str(cfg), "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    results = pd.read_csv(out / "results.csv")
    assert list(results["extractor"]) == ["quadrant-means"]
    assert results["status"].tolist() == ["ok"]
    assert results["dim"].tolist() == [4]
    assert results["accuracy"].iloc[0] > 0.2  # well above chance (0.1) on digits


def test_decorated_plugin_file_named_in_config_runs(tmp_path, monkeypatch):
    from featbench import run

    monkeypatch.setenv("FEATBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "my_features.py").write_text(textwrap.dedent('''
        from featbench import register_extractor
        from featbench.extractors import Extractor, ExtractorSpec

        @register_extractor("test-row-means")
        class RowMeans(Extractor):
            """Mean of each of the image's first 8 rows.

            References
            ----------
            none
            """
            spec = ExtractorSpec(family="classical", color="gray", description="row means", references=("-",))

            def _transform_one(self, image):
                return image[:8].mean(axis=1)
    '''))
    cfg = tmp_path / "exp.toml"
    cfg.write_text(textwrap.dedent("""
        name = "decorated"
        plugins = ["my_features.py"]
        [protocol]
        repeats = 2
        [[datasets]]
        name = "digits"
        limit_per_class = 20
        [[extractors]]
        name = "test-row-means"
        [[classifiers]]
        name = "linear-svm"
        C = [0.1, 1.0]
    """))
    try:
        result = run(cfg, tmp_path / "out")
    finally:
        EXTRACTORS.unregister("test-row-means")
    assert [r["status"] for r in result.records] == ["ok", "ok"]
    assert all(r["dim"] == 8 and r["accuracy"] > 0.3 for r in result.records)
    assert (tmp_path / "out" / "report.md").read_text().count("test-row-means") >= 1


HOSTILE_ENTRY_POINTS = {
    "fb_not_a_class.py": "NUMBER = 42\n",
    "fb_exits.py": "import sys\nsys.exit(4)\n",
    "fb_raises.py": "raise OSError(5, 'Input/output error')\n",
}


def test_hostile_entry_points_are_listed_as_unavailable_and_break_nothing(tmp_path):
    """An entry point naming an int, a module that calls sys.exit(4) at import, and one that raises:
    ``featbench list`` exits 0, lists each as unavailable with its reason, and still lists the built-ins;
    a run that names none of them is unaffected."""
    site = tmp_path / "site"
    site.mkdir()
    for name, code in HOSTILE_ENTRY_POINTS.items():
        (site / name).write_text(code)
    _dist_info(site, "fb_hostile", "[featbench.extractors]\nan-int = fb_not_a_class:NUMBER\n"
                                   "exits = fb_exits\n"
                                   "[featbench.datasets]\nflaky-disk = fb_raises:load\n"
                                   "[featbench.classifiers]\nint-classifier = fb_not_a_class:NUMBER\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "FEATBENCH_CACHE": str(tmp_path / "cache")}
    listed = subprocess.run([sys.executable, "-m", "featbench", "list"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = {ln.split()[0]: ln for ln in listed.stdout.splitlines() if ln.startswith("  ")}
    assert "unavailable" in lines["an-int"] and "42 is not an extractor class" in lines["an-int"]
    assert "unavailable" in lines["exits"] and "sys.exit(4)" in lines["exits"]
    assert "unavailable" in lines["flaky-disk"] and "OSError" in lines["flaky-disk"]
    assert "unavailable" in lines["int-classifier"] and "not a classifier class" in lines["int-classifier"]
    assert "available" in lines["hog"] and "available" in lines["digits"] and "available" in lines["logreg"]

    cfg = tmp_path / "exp.toml"
    cfg.write_text('name = "x"\n[protocol]\nrepeats = 1\n[[datasets]]\nname = "digits"\nlimit_per_class = 10\n'
                   '[[extractors]]\nname = "exits"\n[[classifiers]]\nname = "logreg"\n')
    ran = subprocess.run([sys.executable, "-m", "featbench", "run", str(cfg), "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [ran.stderr.strip()]
    assert "extractor 'exits' is unavailable: it called sys.exit(4) on import" in ran.stderr


def test_what_is_not_an_extractor_is_refused_when_registered():
    with pytest.raises(ConfigError, match=r"cannot register extractor 'weird': 42 is not an extractor class"):
        register_extractor("weird")(42)
    assert "weird" not in list_extractors()


def test_a_plugin_taking_a_built_in_name_is_told_which_one_and_where():
    """The built-ins are registered first whatever was imported first, so the message names the built-in
    that has the name and the file of the class that wanted it."""
    with pytest.raises(ConfigError) as err:
        @register_extractor("hog")
        class MyHog(Extractor):
            spec = ExtractorSpec(family="classical", color="gray", description="mine", references=("-",))

            def _transform_one(self, image):
                return [image.mean()]
    message = str(err.value)
    assert "'hog' is already registered by featbench.extractors.hog." in message
    assert f"(in {__file__})" in message
    assert EXTRACTORS.get("hog").__module__ == "featbench.extractors.hog"
