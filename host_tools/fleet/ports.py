"""The serial ports of connected terminals, by USB vendor/product id, and `--port auto`.

find_ports()            # ["/dev/ttyUSB0", ...]: CP210x, CH340/CH9102, FTDI, ESP32 native USB
resolve_port("auto")    # the only connected terminal's port (PortError when none or several)
"""

from host_tools import TapkitError


class PortError(TapkitError):
    pass


# USB bridges and the native USB of ESP32 boards: (vendor id, product id or None for any)
USB_IDS = (
    (0x10C4, 0xEA60),  # Silicon Labs CP210x
    (0x10C4, 0xEA70),
    (0x1A86, 0x7523),  # WCH CH340
    (0x1A86, 0x55D4),  # WCH CH9102
    (0x0403, 0x6001),  # FTDI FT232R
    (0x0403, 0x6010),  # FT2232
    (0x0403, 0x6015),  # FT231X
    (0x303A, None),  # Espressif native USB (ESP32-S2/S3/C3 USB-Serial-JTAG)
)


def find_ports():
    """Serial ports of connected readers, by USB vendor/product id."""
    from serial.tools import list_ports

    out = []
    for p in list_ports.comports():
        for vid, pid in USB_IDS:
            if p.vid == vid and (pid is None or p.pid == pid):
                out.append(p.device)
                break
    return sorted(out)


def resolve_port(port):
    """`port` itself, or for "auto" the port of the only connected terminal."""
    if port != "auto":
        return port
    ports = find_ports()
    if not ports:
        raise PortError("no terminal connected (no CP210x/CH340/FTDI/ESP32 USB serial port found)")
    if len(ports) > 1:
        raise PortError(
            "%d terminals connected (%s): give --port" % (len(ports), ", ".join(ports))
        )
    return ports[0]
