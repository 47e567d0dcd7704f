"""minivgg.weights and weights_location: download against a local HTTP server, the manifest,
inspect, path, bad input, and the one place that spells the download command.

Nothing here contacts the internet: the server is http.server on 127.0.0.1 in a thread, and
"no network" is a closed port on 127.0.0.1.
"""
import ast
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import ROOT
from matfiles import write_tiny_vgg16_mat, write_tiny_vgg19_mat
from minivgg import weights
from minivgg.errors import UserError
from minivgg.weights import download, main
from minivgg.weights_location import DOWNLOAD_CMD, FILENAME, MANIFEST, find_weights

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves server.payload; honours Range unless told not to; may stop after ``cut`` bytes."""

    def do_GET(self):
        server = self.server
        server.ranges.append(self.headers.get("Range"))
        if self.path.endswith("missing.mat"):
            return self.send_error(404, "Not Found")
        start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range") or "bytes=0-")[1])
        start = start if server.honour_range else 0
        body = server.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/"
                                              f"{len(server.payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:server.cut] if server.cut else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.payload, httpd.ranges, httpd.honour_range, httpd.cut = PAYLOAD, [], True, None
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/{FILENAME}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{FILENAME}"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MINIVGG_WEIGHTS", raising=False)


def fetch(url, dest, **options):
    return download(url, dest, **{"size": len(PAYLOAD), "sha256": SHA, "progress": False,
                                  **options})


def one_error_line(err):
    """stderr holds exactly one line, 'error: <one sentence>', and no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not re.search(r"[.!?]\s+[A-Z]", lines[0]) and "Traceback" not in err
    return lines[0]


# -- download ---------------------------------------------------------------------------------
def test_download_verifies_and_moves_into_place(server, tmp_path):
    path = fetch(server.url, tmp_path / "dest")
    assert path == tmp_path / "dest" / FILENAME and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == [FILENAME]
    assert fetch(server.url, tmp_path / "dest") == path and len(server.ranges) == 1  # no refetch


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.cut = 100_000
    with pytest.raises(UserError, match="ended early at 100,000 of 300,000 bytes.*resume"):
        fetch(server.url, tmp_path)
    part = tmp_path / (FILENAME + ".part")
    assert part.stat().st_size == 100_000 and not (tmp_path / FILENAME).exists()
    server.cut = None
    assert fetch(server.url, tmp_path).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=0-", "bytes=100000-"] and not part.exists()


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    (tmp_path / (FILENAME + ".part")).write_bytes(b"x" * 5000)
    server.honour_range = False
    assert fetch(server.url, tmp_path).read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=5000-"]


def test_checksum_mismatch_is_kept_aside_and_never_loaded(server, tmp_path):
    dest = tmp_path / "weights"
    with pytest.raises(UserError, match="does not match the published one.*set aside") as info:
        fetch(server.url, dest, sha256="0" * 64)
    assert not re.search(r"[.!?]\s+[A-Z]", str(info.value))
    assert (dest / (FILENAME + ".rejected")).read_bytes() == PAYLOAD
    assert not (dest / FILENAME).exists() and not (dest / (FILENAME + ".part")).exists()
    assert find_weights(cwd=tmp_path) is None                       # the search skips it


def test_size_mismatch_is_rejected_too(server, tmp_path):
    with pytest.raises(UserError, match="does not match"):
        fetch(server.url, tmp_path, size=len(PAYLOAD) - 10)
    assert (tmp_path / (FILENAME + ".rejected")).exists()


def test_an_existing_file_that_differs_is_not_overwritten(server, tmp_path):
    (tmp_path / FILENAME).write_bytes(b"mine")
    with pytest.raises(UserError, match="already exists but is not the published file"):
        fetch(server.url, tmp_path)
    assert (tmp_path / FILENAME).read_bytes() == b"mine" and server.ranges == []


def test_http_errors_and_mirror_fallback(server, tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="answered HTTP 404"):
        fetch(server.url.replace(FILENAME, "missing.mat"), tmp_path)
    monkeypatch.setitem(MANIFEST, "current", {**MANIFEST["current"], "size": len(PAYLOAD),
                                               "sha256": SHA})
    path = weights.download_published(tmp_path, urls=[server.url.replace(FILENAME, "missing.mat"),
                                                      server.url], progress=False)
    assert path.read_bytes() == PAYLOAD and "trying the next address" in capsys.readouterr().err


def test_cli_download_without_network_is_one_sentence(closed_port_url, tmp_path):
    result = subprocess.run([sys.executable, "-m", "minivgg.weights", "download", "--quiet",
                             "--dest", str(tmp_path), "--url", closed_port_url],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "could not download" in line and "refused" in line.lower() and "urlopen" not in line


def test_cli_download_to_a_destination_that_is_not_writable(capsys, tmp_path, closed_port_url):
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["download", "--dest", str(tmp_path / "a_file"), "--url", closed_port_url]) == 2
    assert "cannot write to the destination" in one_error_line(capsys.readouterr().err)


def test_cli_download_reports_the_verified_file(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MANIFEST, "current", {**MANIFEST["current"], "size": len(PAYLOAD),
                                               "sha256": SHA})
    assert main(["download", "--quiet", "--dest", str(tmp_path), "--url", server.url]) == 0
    assert f"verified (SHA-256 {SHA[:16]}...): {tmp_path / FILENAME}" in capsys.readouterr().out


# -- manifest, path, inspect ------------------------------------------------------------------
def test_manifest_json_is_a_copy_of_the_one_in_the_package():
    assert json.loads((ROOT / "weights" / "manifest.json").read_text()) == MANIFEST
    facts = MANIFEST["current"]
    assert facts["size"] == 534_904_783 and len(facts["sha256"]) == 64
    assert facts["url"] == "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat"


def test_path_lists_the_places_in_order(tmp_path, monkeypatch, capsys):
    assert main(["path"]) == 0
    out = capsys.readouterr().out
    assert out.index("$MINIVGG_WEIGHTS") < out.index(str(tmp_path / "weights" / FILENAME)) \
        < out.index(str(tmp_path / "xdg" / "minivgg" / FILENAME))
    assert "random weights" in out and "python -m minivgg.weights download" in out
    (tmp_path / "weights").mkdir()
    write_tiny_vgg19_mat(tmp_path / "weights" / FILENAME)
    assert main(["path"]) == 0
    assert f"load_vgg19() uses: {tmp_path / 'weights' / FILENAME}" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["current", "old"])
def test_inspect_prints_the_layout_the_table_and_the_mean(tmp_path, capsys, layout):
    path = tmp_path / "tiny.mat"
    write_tiny_vgg19_mat(path, layout)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{layout} MatConvNet layout, 43 layers" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:45]}
    assert len(rows) == 43 and list(rows)[-1] == "prob"
    assert rows["conv1_1"] == ["conv", "3x3x3x4", "1", "1", "1", "1", "1", "1"]
    pad = ["0", "1", "0", "1"] if layout == "current" else ["0", "0", "0", "0"]
    assert rows["pool5"] == ["pool", "max", "2x2", *pad, "2", "2"]
    assert rows["fc8"][:2] == ["conv", "1x1x10x5"] and rows["relu3_4"] == ["relu", "-", "-", "-"]
    assert "mean pixel (RGB): 123.680 116.779 103.939" in out and "VGG-19: yes" in out


def write_bytes(path, content):
    path.write_bytes(content)


def make_pth_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


def make_truncated(path):
    write_tiny_vgg19_mat(path)
    path.write_bytes(path.read_bytes()[:5000])


BAD_INPUTS = {   # file name: (how to make it, words the one sentence must contain)
    "missing.mat": (lambda p: None, "does not exist"),
    "truncated.mat": (make_truncated, "incomplete or damaged (5,000 of 534,904,783 bytes"),
    "v73.mat": (lambda p: write_bytes(p, b"MATLAB 7.3 MAT-file".ljust(512)), "v7.3 (HDF5)"),
    "vgg19.caffemodel": (lambda p: write_bytes(p, b"\x0a\x05VGG19" + bytes(300)), "Caffe"),
    "vgg19.pth": (make_pth_zip, "PyTorch"),
    "vgg16.mat": (write_tiny_vgg16_mat, "VGG-16"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_cli_inspect_bad_inputs_are_one_sentence_exit_2(tmp_path, capsys, name):
    make, words = BAD_INPUTS[name]
    make(tmp_path / name)
    assert main(["inspect", str(tmp_path / name)]) == 2
    assert words in one_error_line(capsys.readouterr().err)


def test_cli_bad_file_in_a_subprocess_has_no_traceback(tmp_path):
    make_truncated(tmp_path / "truncated.mat")
    result = subprocess.run([sys.executable, "-m", "minivgg.weights", "inspect", "truncated.mat"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "incomplete" in one_error_line(result.stderr)


def test_the_download_command_is_spelled_once_in_the_code():
    """Messages take it from weights_location.DOWNLOAD_CMD (or DOWNLOAD_HINT, made from it)."""
    spelled = []
    for path in sorted((ROOT / "minivgg").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        spelled += [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and "minivgg.weights download" in node.value and id(node) not in docstrings]
    assert len(spelled) == 1 and spelled[0].startswith("weights_location.py:"), spelled
    assert DOWNLOAD_CMD == "`python -m minivgg.weights download`"
