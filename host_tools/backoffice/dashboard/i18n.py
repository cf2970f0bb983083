"""The dashboard's labels in English and Persian (right to left), and amounts in Rial or Toman.

    t = Labels("fa", "toman"); t("revenue"); t.money(250000)   # "درآمد تأییدشده", "۲۵٬۰۰۰ تومان"

Finding details stay in the words the report writes them (English); their kinds, the page and
table labels, statuses, flags, numbers and the currency are translated.
"""

LANGS = ("en", "fa")
UNITS = ("rial", "toman")

_L = {
    "title": ("tapkit back office", "پیشخوان پشتیبانی تپ‌کیت"),
    "overview": ("Overview", "نمای کلی"),
    "fleet": ("Fleet", "ناوگان"),
    "findings": ("Findings", "یافته‌های تطبیق"),
    "card_lookup": ("Card lookup", "جستجوی کارت"),
    "revenue": ("Confirmed revenue", "درآمد تأییدشده"),
    "unconfirmed": ("Unconfirmed", "تأییدنشده"),
    "taps": ("Taps", "تراکنش‌ها"),
    "refused": ("Refused", "ردشده"),
    "charges": ("Charges", "کسر کرایه"),
    "topped_up": ("Topped up at offices", "شارژ در دفاتر کارت"),
    "paid_out": ("Paid out (card refunds)", "بازپرداخت کارت"),
    "revenue_over_time": ("Revenue over time", "درآمد در طول زمان"),
    "taps_per_hour": ("Taps per hour", "تراکنش در ساعت"),
    "refusals_by_reason": ("Refusals by reason", "ردها بر اساس علت"),
    "reason": ("Reason", "علت"),
    "count": ("Count", "تعداد"),
    "alerts": ("Alerts", "هشدارها"),
    "no_alerts": ("No alerts", "هشداری نیست"),
    "terminal": ("Terminal", "پایانه"),
    "office": ("card office", "دفتر کارت"),
    "last_seen": ("Last seen", "آخرین ارتباط"),
    "via": ("Via", "از راه"),
    "unsynced": ("Unsynced", "همگام‌نشده"),
    "fill": ("Journal fill %", "پرشدگی دفتر ٪"),
    "drift": ("Clock drift (s)", "انحراف ساعت (ثانیه)"),
    "unset_taps": ("Taps, clock unset", "تراکنش با ساعت تنظیم‌نشده"),
    "firmware": ("Firmware", "سفت‌افزار"),
    "rollouts": ("Firmware rollouts", "انتشار سفت‌افزار"),
    "release": ("Release", "نسخه"),
    "board": ("Board", "برد"),
    "plan": ("Plan", "برنامه"),
    "targeted": ("Targeted", "هدف"),
    "running": ("Running", "در حال اجرا"),
    "in_progress": ("In progress", "در جریان"),
    "rolled_back": ("Rolled back", "برگشت‌خورده"),
    "tables": ("Fares / deny list", "نرخ‌نامه / فهرست سیاه"),
    "flags": ("Flags", "پرچم‌ها"),
    "never": ("never", "هرگز"),
    "kind": ("Kind", "نوع"),
    "where": ("Where", "کجا"),
    "detail": ("Detail", "جزئیات"),
    "amount": ("Amount", "مبلغ"),
    "balance": ("Balance", "موجودی"),
    "counter": ("Counter", "شمارنده"),
    "status": ("Status", "وضعیت"),
    "time": ("Time", "زمان"),
    "seq": ("Seq", "شماره"),
    "source": ("Source", "منبع"),
    "card": ("Card", "کارت"),
    "record": ("Record", "رکورد"),
    "search": ("Look up", "جستجو"),
    "uid": ("Card UID", "شناسه کارت"),
    "state": ("Newest state", "آخرین وضعیت"),
    "no_state": ("no state known", "وضعیتی معلوم نیست"),
    "not_audited": (
        "records not audited yet (not counted)",
        "رکورد هنوز بررسی نشده (شمرده نمی‌شود)",
    ),
    "period": ("Period", "بازه"),
    "newer": ("newer", "جدیدتر"),
    "older": ("older", "قدیمی‌تر"),
    "all": ("all", "همه"),
    "none": ("none", "هیچ"),
    "unit": ("Rial", "ریال"),
    "unit_toman": ("Toman", "تومان"),
    "field": ("Field", "فیلد"),
    "value": ("Value", "مقدار"),
    "page": ("Page", "صفحه"),
    "stale": ("stale", "بی‌ارتباط"),
    "high_water": ("journal filling", "دفتر نزدیک پر"),
    "rejects": ("refused uploads", "بارگذاری ردشده"),
    "clock_unset": ("clock unset", "ساعت تنظیم‌نشده"),
    # statuses
    "s_confirmed": ("confirmed", "تأییدشده"),
    "s_unconfirmed": ("unconfirmed", "تأییدنشده"),
    "s_voided": ("voided", "باطل‌شده"),
    "s_phantom": ("phantom", "انجام‌نشده"),
    "s_quarantined": ("quarantined", "قرنطینه"),
    "s_unverified": ("unverified", "تأییدنشدنی"),
    "s_ok": ("ok", "عادی"),
    # finding kinds
    "f_edited": ("record edited", "رکورد ویرایش‌شده"),
    "f_mac": ("MAC chain broken", "زنجیره امضا شکسته"),
    "f_damaged": ("record damaged", "رکورد خراب"),
    "f_unverified": ("link not verifiable", "پیوند تأییدنشدنی"),
    "f_foreign_kind": ("foreign record", "رکورد بیگانه"),
    "f_seq_gap": ("sequence gap", "شکاف توالی"),
    "f_missing": ("missing transaction", "تراکنش مفقود"),
    "f_balance": ("balance break", "ناپیوستگی موجودی"),
    "f_clone": ("clone or rollback", "کارت تکثیرشده یا بازگردانده"),
}

_FA_DIGITS = str.maketrans("0123456789,.", "۰۱۲۳۴۵۶۷۸۹٬٫")
_FA_DIGITS_BACK = str.maketrans("۰۱۲۳۴۵۶۷۸۹٬٫", "0123456789,.")


def latin(text):
    """Persian digits and separators back to ASCII (what the browser test compares)."""
    return text.translate(_FA_DIGITS_BACK)


class Labels:
    def __init__(self, lang="en", unit="rial"):
        self.lang = lang if lang in LANGS else "en"
        self.unit = unit if unit in UNITS else "rial"
        self.dir = "rtl" if self.lang == "fa" else "ltr"

    def __call__(self, key):
        pair = _L.get(key)
        if pair is None:
            return key
        return pair[1] if self.lang == "fa" else pair[0]

    def num(self, v):
        if v is None:
            return "-"
        s = format(v, ",") if isinstance(v, int) else format(v, ",.1f")
        return s.translate(_FA_DIGITS) if self.lang == "fa" else s

    def money(self, rial, unit=True):
        """An integer Rial amount in the chosen unit (Toman = Rial / 10)."""
        if rial is None:
            return "-"
        if self.unit == "toman":
            v = rial / 10
            v = int(v) if v == int(v) else v
            name = self("unit_toman")
        else:
            v, name = int(rial), self("unit")
        return self.num(v) + (" " + name if unit else "")

    def date(self, ts, tz=0, fmt="%Y-%m-%d %H:%M"):
        """Local time of a unix time (tz: seconds east of UTC)."""
        import time

        if not ts:
            return self("never")
        s = time.strftime(fmt, time.gmtime(int(ts) + int(tz)))
        return s.translate(_FA_DIGITS) if self.lang == "fa" else s

    def status(self, s):
        return self("s_" + s) if s else "-"

    def finding(self, kind):
        return self("f_" + kind)

    def flag(self, f):
        return self(f)
