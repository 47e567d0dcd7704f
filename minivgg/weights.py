"""Downloading the VGG-19 weights file, and the command line ``python -m minivgg.weights``.

    python -m minivgg.weights download [--dest DIR] [--url URL]   # fetch, resume, verify
    python -m minivgg.weights inspect FILE                        # layout, layer table, mean
    python -m minivgg.weights path                                # where minivgg looks

The published file, its size and SHA-256 (``MANIFEST``) and the places searched are in
weights_location.py; ``inspect`` reads the file with matfile.py. A download is written to
``NAME.part`` (resumed with an HTTP Range request when run again), checked for size and SHA-256,
and only then renamed to NAME; a file that fails the check is renamed ``NAME.rejected`` and never
loaded. Nothing in minivgg imports this module, so ``python -m minivgg.weights`` runs it as
``__main__`` without runpy's warning about a module imported twice.
"""
import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .errors import UserError
from .matfile import describe_file, mean_pixel, parse_vgg19
from .weights_location import (DOWNLOAD_CMD, FILENAME, MANIFEST, find_weights,
                               search_locations, user_cache_dir)

CHUNK = 1 << 20


class DownloadError(UserError):
    """The network failed (another mirror may work); the partial file is kept for a resume."""


# -- download -----------------------------------------------------------------------------
def download(url, dest, *, size, sha256, filename=FILENAME, progress=True, timeout=60):
    """Fetch url into dest/filename: stream to .part, resume it, verify, then rename. -> Path."""
    final = destination(dest, filename)
    if final.exists():
        return check_existing(final, size=size, sha256=sha256)
    part = final.with_name(final.name + ".part")
    fetch(url, part, size=size, progress=progress, timeout=timeout)
    return verify_and_move(part, final, size=size, sha256=sha256)


def destination(dest, filename):
    """dest/filename after making dest; UserError when dest cannot be a writable folder."""
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        probe = dest / f".{filename}.probe"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to the destination {dest} ({exc.strerror or exc}); "
                        "choose a writable folder with --dest DIR") from None
    return dest / filename


def fetch(url, part, *, size, progress, timeout):
    """Append the missing bytes of url to part (HTTP Range from part's size)."""
    offset = part.stat().st_size if part.exists() else 0
    if offset >= size:
        return                                       # complete (or too long): verify decides
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-",
                                                   "User-Agent": "minivgg"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            stream(response, part, resumed_offset(response, offset), size, progress)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:                          # 416: nothing left to send
            raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}); try again "
                                "later, or fetch the file by hand (see weights/README.md)"
                                ) from None
    except (OSError, http.client.HTTPException) as exc:   # URLError, timeouts, resets
        got = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"could not download {url} ({network_reason(exc)}) after {got:,} of "
                            f"{size:,} bytes; check the network and run the same command again "
                            "(it resumes), or fetch the file by hand (see weights/README.md)"
                            ) from None


def network_reason(exc):
    """A short reason for a network failure, without urllib's nesting."""
    reason = getattr(exc, "reason", None) or exc
    return getattr(reason, "strerror", None) or str(reason) or type(exc).__name__


def resumed_offset(response, offset):
    """Where the body starts: offset when the server honoured the Range (206), else 0."""
    if response.status == 206 and response.headers.get("Content-Range", "").startswith(
            f"bytes {offset}-"):
        return offset
    return 0


def stream(response, part, offset, size, progress):
    """Copy the body into part (appended at offset, or rewritten from 0) with a progress bar."""
    from tqdm import tqdm
    try:
        f = open(part, "ab" if offset else "wb")
    except OSError as exc:
        raise UserError(f"cannot write {part} ({exc.strerror or exc}); choose a writable folder "
                        "with --dest DIR") from None
    with f, tqdm(total=size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                 desc=part.name, disable=not progress) as bar:
        while chunk := response.read(CHUNK):
            write_chunk(f, chunk, part)
            bar.update(len(chunk))


def write_chunk(f, chunk, part):
    try:
        f.write(chunk)
    except OSError as exc:                           # disk full: not a network error
        raise UserError(f"cannot write {part} ({exc.strerror or exc}); free some space or "
                        "choose another folder with --dest DIR") from None


def file_sha256(path):
    """The SHA-256 of a file, read in 1 MiB chunks, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_and_move(part, final, *, size, sha256):
    """Rename part to final when size and SHA-256 match; set it aside as .rejected otherwise."""
    got = part.stat().st_size
    if got < size:
        raise DownloadError(f"the download ended early at {got:,} of {size:,} bytes; run the same "
                            "command again to resume it")
    digest = file_sha256(part)
    if got != size or digest != sha256:
        rejected = final.with_name(final.name + ".rejected")
        os.replace(part, rejected)
        raise UserError(f"the downloaded file does not match the published one ({got:,} bytes, "
                        f"SHA-256 {digest[:16]}... instead of {size:,} bytes, {sha256[:16]}...), "
                        f"so it was set aside as {rejected} and will not be used; run the command "
                        "again, or fetch the file by hand (see weights/README.md)")
    os.replace(part, final)
    return final


def check_existing(final, *, size, sha256):
    """final when it is already the verified file; UserError when something else is there."""
    if final.stat().st_size == size and file_sha256(final) == sha256:
        return final
    raise UserError(f"{final} already exists but is not the published file (size or SHA-256 "
                    "differ); move it away and run the command again")


def download_published(dest, *, urls=None, progress=True):
    """Download the current published file into dest, trying each URL until the network works."""
    facts = MANIFEST["current"]
    urls = urls or [facts["url"], *facts["mirrors"]]
    options = dict(size=facts["size"], sha256=facts["sha256"], filename=facts["filename"],
                   progress=progress)
    for url in urls[:-1]:
        try:
            return download(url, dest, **options)
        except DownloadError:
            print(f"note: {url} did not work; trying the next address", file=sys.stderr)
    return download(urls[-1], dest, **options)


# -- the command line ---------------------------------------------------------------------
def download_command(args):
    path = download_published(args.dest or user_cache_dir(),
                              urls=[args.url] if args.url else None, progress=not args.quiet)
    print(f"verified (SHA-256 {MANIFEST['current']['sha256'][:16]}...): {path}")
    return 0


def path_command(args):
    print("minivgg looks for the VGG-19 weights in this order:")
    if not os.environ.get("MINIVGG_WEIGHTS"):
        print("  $MINIVGG_WEIGHTS  (not set)")
    for label, path in search_locations():
        state = f"found, {path.stat().st_size:,} bytes" if path.is_file() else "not found"
        print(f"  {label:<17} {path}  {state}")
    found = find_weights()
    print(f"load_vgg19() uses: {found}" if found else "nothing found: load_vgg19() uses random "
          f"weights; get the real ones with {DOWNLOAD_CMD}")
    return 0


def inspect_command(args):
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give the path of a MatConvNet .mat file (get "
                        f"VGG-19 with {DOWNLOAD_CMD})")
    layout, specs, data = describe_file(path)
    print(f"{path}: {layout} MatConvNet layout, {len(specs)} layers")
    print(layer_table(specs))
    try:
        mean = mean_pixel(data, layout)
        print("mean pixel (RGB): " + " ".join(f"{m:.3f}" for m in mean))
        parse_vgg19(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    print("VGG-19: yes; minivgg keeps conv1_1 ... pool5 (16 conv layers)")
    return 0


def layer_table(specs):
    """The inspect table: name, type, kernel (KH x KW x C x O, or the pool window), pad, stride."""
    rows = [("name", "type", "kernel (H W in out)", "pad [t b l r]", "stride")]
    for s in specs:
        kernel = "x".join(map(str, s.kernel)) or "-"
        geometry = s.kind in ("conv", "pool")
        rows.append((s.name, s.kind, f"{s.method} {kernel}".strip(),
                     " ".join(map(str, s.pad)) if geometry else "-",
                     " ".join(map(str, s.stride)) if geometry else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def parser():
    p = argparse.ArgumentParser(prog="python -m minivgg.weights",
                                description="Get, inspect and locate the VGG-19 weights file.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download and verify imagenet-vgg-verydeep-19.mat")
    d.add_argument("--dest", help=f"folder to put it in (default: {user_cache_dir()})")
    d.add_argument("--url", help="a mirror to use (size and SHA-256 are still checked)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=download_command)
    i = sub.add_parser("inspect", help="print the layout, the layers and the mean of a .mat")
    i.add_argument("file")
    i.set_defaults(func=inspect_command)
    sub.add_parser("path", help="where minivgg looks").set_defaults(func=path_command)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
