# Runs the test_* functions of one shared test module and prints one line per test:
#   PASS name result-repr     or     FAIL name ExcType message
# Used on both interpreters (tests/card_schema/test_shared_both.py compares the outputs).
import sys


def main(name):
    mod = __import__(name)
    names = sorted(n for n in dir(mod) if n.startswith("test_"))
    for n in names:
        try:
            r = getattr(mod, n)()
            print("PASS", n, repr(r))
        except Exception as e:  # report and go on: one failure must not hide the others
            print("FAIL", n, type(e).__name__, e)


if __name__ == "__main__":
    main(sys.argv[1])
