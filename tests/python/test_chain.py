"""tools/device/chain.sh: a chain of steps that every device call reruns unchanged."""
import os
import subprocess
import tempfile
import time
import unittest

from tests.python import _util

CHAIN = os.path.join(_util.TOOLS, "device", "chain.sh")


def chain(log, steps, seconds_left=600):
    env = dict(os.environ, END=str(int(time.time()) + seconds_left))
    return subprocess.run(["bash", CHAIN, log] + steps, env=env, capture_output=True, text=True).returncode


class Chain(unittest.TestCase):
    def test_resumes_where_the_last_call_stopped(self):
        with tempfile.TemporaryDirectory() as d:
            log, flag = os.path.join(d, "logs", "a.log"), os.path.join(d, "second-call")
            # step 2 is incomplete until the flag exists, as a training stage is until its last segment
            steps = ["0|echo one",
                     f"0|if [ -f {flag} ]; then echo 'STATUS stage=x step=2/2 done'; "
                     f"else echo 'STATUS stage=x step=1/2 incomplete: rerun'; fi",
                     "0|echo minutes={M}"]
            self.assertEqual(chain(log, steps), 3)
            open(flag, "w").close()
            self.assertEqual(chain(log, steps), 0)
            self.assertEqual(chain(log, steps), 0)  # all done: nothing runs again
            text = open(log).read()
            self.assertEqual(text.count("\none\n"), 1)
            self.assertEqual(text.count("\nSTATUS stage=x step=1/2 incomplete"), 1)
            minutes = float(text.split("minutes=")[-1].split()[0])  # the output, after the command line
            self.assertTrue(8.0 < minutes < 10.0, minutes)

    def test_waits_for_time_and_stops_on_failure(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "b.log")
            self.assertEqual(chain(log, ["0|echo quick", "300|echo long"], seconds_left=60), 3)
            self.assertIn("waits: ", open(log).read())
            self.assertNotIn("\nlong\n", open(log).read())
            self.assertEqual(chain(log, ["0|echo quick", "300|echo long"], seconds_left=600), 0)
            self.assertIn("\nlong\n", open(log).read())
            self.assertEqual(chain(log, ["0|exit 7", "0|echo after"]), 1)
            self.assertIn("failed (exit 7)", open(log).read())
            self.assertNotIn("after", open(log).read())


if __name__ == "__main__":
    unittest.main()
