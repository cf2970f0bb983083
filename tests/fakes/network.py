"""Fake `network` for the MicroPython unix port (signatures as in micropython-esp32-stubs).

WLAN(STA_IF).connect(ssid, key) succeeds when "ssid:key" is listed in $TAPKIT_FAKE_WIFI
(comma separated); otherwise the station stays disconnected, as out of range of any access point.
"""

import os

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self.interface_id = interface_id
        self._active = False
        self._connected = False
        self._status = STAT_IDLE
        self.ssid = None

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._connected = False
        return None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        nets = (os.getenv("TAPKIT_FAKE_WIFI") or "").split(",")
        self.ssid = ssid
        if "%s:%s" % (ssid, key or "") in nets:
            self._connected = True
            self._status = STAT_GOT_IP
        else:
            self._connected = False
            self._status = STAT_NO_AP_FOUND

    def disconnect(self):
        self._connected = False
        self._status = STAT_IDLE

    def isconnected(self):
        return self._connected

    def status(self, param=None):
        if param == "rssi":
            return -55 if self._connected else 0
        return self._status

    def ifconfig(self, config=None):
        if self._connected:
            return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kw):
        if args and args[0] == "mac":
            return b"\x24\x0a\xc4\x00\x00\x01"
        return None
