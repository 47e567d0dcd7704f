"""Packaging: the engine installs as miniautograd only, and imports without CuPy."""
import subprocess
import sys

from conftest import ROOT


def run_python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_folder_refuses_to_be_imported_as_autograd():
    result = run_python("import autograd", cwd=ROOT)
    assert result.returncode != 0
    assert "must be imported as 'miniautograd'" in result.stderr


def test_install_creates_no_autograd_package(tmp_path):
    code = ("import importlib.util as u; s = u.find_spec('autograd'); "
            "print('none' if s is None else s.origin)")
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(ROOT) not in result.stdout   # absent, or somebody else's (HIPS) autograd


def test_engine_and_model_import_without_cupy(tmp_path):
    code = ("import sys; sys.modules['cupy'] = None\n"   # makes `import cupy` fail
            "import miniautograd as ag, minivgg\n"
            "assert not ag.gpu_available()\n"
            "try:\n    ag.require_gpu()\nexcept RuntimeError as e:\n    print(e)\n")
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pip install" in result.stdout


def test_wheel_holds_every_package_and_no_autograd(tmp_path):
    """A plain `pip install .` ships every subpackage, and nothing named autograd."""
    import zipfile
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if "/" in name}
    assert {"miniautograd", "minivgg"} <= top_level and "autograd" not in top_level
    source_files = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/**/*.py")
                    if p.parts[len(ROOT.parts)] in ("autograd", "minivgg")}
    for path in source_files:
        installed = path.replace("autograd/", "miniautograd/", 1)
        assert installed in names, f"{path} is missing from the wheel: add its package to setup.py"
