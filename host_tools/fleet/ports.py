"""The serial ports of connected terminals, by USB vendor/product id, and `--port auto`.

find_ports()            # ["/dev/ttyUSB0", ...]: CP210x, CH340/CH9102, FTDI, ESP32 native USB
resolve_port("auto")    # the only connected terminal's port (PortError when none or several)
survey(extra=["/dev/pts/5"])   # every serial port: USB ids, the bridge's name, who answers
"""

import threading

from host_tools import TapkitError


class PortError(TapkitError):
    pass


# USB bridges and the native USB of ESP32 boards: (vendor id, product id or None for any)
USB_IDS = (
    (0x10C4, 0xEA60, "Silicon Labs CP210x"),
    (0x10C4, 0xEA70, "Silicon Labs CP2105"),
    (0x1A86, 0x7523, "WCH CH340"),
    (0x1A86, 0x55D4, "WCH CH9102"),
    (0x0403, 0x6001, "FTDI FT232R"),
    (0x0403, 0x6010, "FTDI FT2232"),
    (0x0403, 0x6015, "FTDI FT231X"),
    (0x303A, None, "Espressif native USB"),  # ESP32-S2/S3/C3 USB-Serial-JTAG
)


def bridge(vid, pid):
    """The name of a terminal's USB serial bridge with these ids, or None."""
    for v, p, name in USB_IDS:
        if vid == v and (p is None or pid == p):
            return name
    return None


def find_ports():
    """Serial ports of connected readers, by USB vendor/product id."""
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports() if bridge(p.vid, p.pid))


def probe(port, timeout=1.0):
    """Who answers on `port`: {"answer": "tapkit", "terminal_id", "profile", "fw", "unsynced"},
    or {"answer": "none" | "unavailable" | "error", "note": why}. One IDENTIFY, one retry."""
    from host_tools.fleet.link import LinkError, NoAnswer, PortUnavailable, SerialLink

    try:
        with SerialLink(port, timeout=timeout, retries=1) as link:
            info = link.identify()
    except LinkError as e:
        answer = {PortUnavailable: "unavailable", NoAnswer: "none"}.get(type(e), "error")
        return {"answer": answer, "note": str(e)}
    keys = ("terminal_id", "profile", "fw", "unsynced")
    return dict({"answer": "tapkit"}, **{k: info.get(k) for k in keys})


def survey(extra=(), probe_ports=True, timeout=1.0):
    """Every serial port the system lists, and `extra` ports (a pty of a virtual board): device, USB
    ids, description, the terminal bridge it is (or None), and, probed in parallel, who answers.
    Only terminal bridges and `extra` ports are probed: a modem or a console on ttyS0 is left alone."""
    from serial.tools import list_ports

    found = {}
    for p in list_ports.comports():
        found[p.device] = {
            "port": p.device,
            "vid": p.vid,
            "pid": p.pid,
            "usb": "%04X:%04X" % (p.vid, p.pid) if p.vid is not None else None,
            "serial_number": p.serial_number,
            "description": p.description if p.description != "n/a" else None,
            "bridge": bridge(p.vid, p.pid),
        }
    for port in extra:
        found.setdefault(
            port,
            {
                "port": port,
                "vid": None,
                "pid": None,
                "usb": None,
                "serial_number": None,
                "description": "given on the command line",
                "bridge": None,
            },
        )
    rows = sorted(found.values(), key=lambda r: r["port"])
    asked = [r for r in rows if probe_ports and (r["bridge"] or r["port"] in extra)]
    for r in rows:
        if r not in asked:
            r["answer"] = "not probed"

    def ask(r):
        r.update(probe(r["port"], timeout))

    threads = [threading.Thread(target=ask, args=(r,), daemon=True) for r in asked]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows


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
