"""The virtual board's littlefs image: what the host writes with littlefs-python the board reads with
MicroPython's VfsLfs2 (emulator/lfsmount.py), and the other way round."""

import os

import pytest

from emulator import lfsimage
from harness import vm

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "emulator")

BOARD_SIDE = vm.script("lfsimage_board")  # harness/mp/lfsimage_board.py


def test_host_and_board_share_the_image(tmp_path, mp_run):
    img = str(tmp_path / "fs.img")
    lfsimage.write_files(img, {"/lib/pkg/mod.py": "X = 42\n", "main.py": b"print(1)\n"})
    assert os.path.getsize(img) == lfsimage.BLOCK_SIZE * lfsimage.BLOCK_COUNT
    assert lfsimage.listdir(img) == ["lib", "main.py"]
    p = mp_run(BOARD_SIDE, path=[EMULATOR], env={"TAPKIT_STATE": str(tmp_path)}, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["X = 42", "['pkg']"]
    assert lfsimage.read_file(img, "/board.txt") == b"written on the board"
    assert lfsimage.listdir(img, "/lib/pkg") == ["moved.py"]
    assert set(lfsimage.listdir(img)) == {"board.txt", "lib", "logs", "main.py"}
    # the /_host mount is the host's directory beside the image, not the image
    assert (tmp_path / "beside.txt").read_text() == "host file"
    assert lfsimage.walk_files(img)["/lib/pkg/moved.py"] == b"X = 42\n"
    lfsimage.remove(img, "/board.txt")
    assert not lfsimage.exists(img, "/board.txt")
    with pytest.raises(FileNotFoundError):
        lfsimage.read_file(img, "/board.txt")


def test_a_damaged_image_is_one_clear_error(tmp_path):
    img = tmp_path / "fs.img"
    img.write_bytes(b"\0" * 4096 * 4)
    with pytest.raises(lfsimage.ImageError, match="not a mountable littlefs image"):
        lfsimage.listdir(str(img))
    img.write_bytes(b"\0" * 100)
    with pytest.raises(lfsimage.ImageError, match="4096-byte blocks"):
        lfsimage.listdir(str(img))
