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


def test_the_virtual_boards_filesystem_has_its_partition_tables_vfs_size(tmp_path):
    import boards
    from host_tools import keystore
    from host_tools.sim.virtual import deploy_virtual

    keystore_path = tmp_path / "ks.json"
    keystore.init(str(keystore_path))

    vfs = boards.partition("unix-virtual", "vfs")
    assert vfs == boards.partition("esp32-devkitc", "vfs") == (0x200000, 0x180000)  # a DevKitC's
    img = deploy_virtual(str(tmp_path / "fs.img"), keystore.load(str(keystore_path)), 1001)
    assert (
        os.path.getsize(img) == 0x180000
    )  # 1.5 MB, not the 2 MB it used to be whatever the board
    fs = lfsimage._lfs(img)
    assert fs.cfg.block_count * fs.cfg.block_size == 0x180000


def test_partitions_fill_in_offsets_as_gen_esp32part_does(tmp_path):
    import boards

    csv = tmp_path / "p.csv"
    csv.write_text(
        "# n, t, st, off, size\nnvs, data, nvs, , 0x6000,\nfactory, app, factory, , 1M,\n"
    )
    assert boards.partitions(None, str(csv)) == [
        ("nvs", "data", "nvs", 0x9000, 0x6000, ""),
        ("factory", "app", "factory", 0x10000, 0x100000, ""),  # apps on 64 KB boundaries
    ]
    csv.write_text("nvs, data, nvs, 0x9000, lots,\n")
    with pytest.raises(boards.PartitionError, match="line 1"):
        boards.partitions(None, str(csv))
