"""Tests of the live-preview rules both plugins share (``livefill_live``)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import livefill_live as live  # noqa: E402


class SendSizeTest(unittest.TestCase):
    def test_large_layers_are_sent_with_the_longer_side_at_the_limit(self):
        self.assertEqual(live.live_send_size(4096, 3000), (512, 375))
        self.assertEqual(live.live_send_size(2000, 500), (512, 128))
        self.assertEqual(live.live_send_size(100, 60, limit=50), (50, 30))

    def test_layers_that_fit_and_a_zero_limit_are_sent_as_they_are(self):
        self.assertIsNone(live.live_send_size(512, 300))
        self.assertIsNone(live.live_send_size(4096, 4096, limit=0))

    def test_thin_layers_keep_at_least_8_pixels(self):
        self.assertEqual(live.live_send_size(4096, 16), (512, 8))


class TimelineTest(unittest.TestCase):
    def test_percentiles_by_nearest_rank(self):
        self.assertEqual(live.percentile([], 0.5), 0.0)
        self.assertEqual(live.percentile([5, 1, 3], 0.5), 3)
        self.assertEqual(live.percentile(range(1, 101), 0.9), 90)

    def test_summary_measures_each_stage_of_shown_frames_only(self):
        t = live.LiveTimeline()
        for i in range(10):
            base = 1000.0 * (i + 1)
            t.add(live.LiveFrame(request_id=i, changed=base, read_started=base + 1, sent=base + 2,
                                 result=base + 12, shown=base + 15, bytes_sent=100, bytes_received=50,
                                 daemon={"unet": 8.0, "onnxruntime": 7.0}, outcome="shown"))
        t.add(live.LiveFrame(request_id=99, changed=1.0, outcome="dropped"))
        s = t.summary()
        self.assertEqual(s["frames"], 10)
        self.assertEqual(s["change_to_sent"]["p50"], 2.0)
        self.assertEqual(s["sent_to_result"]["p50"], 10.0)
        self.assertEqual(s["result_to_shown"]["p50"], 3.0)
        self.assertEqual(s["change_to_shown"]["p90"], 15.0)
        self.assertEqual(s["daemon_ms"]["p50"], 8.0)  # onnxruntime is part of the stages
        self.assertEqual(s["bytes_sent_per_frame"], 100)
        self.assertEqual(t.summary(since=5000.0)["frames"], 6)

    def test_ui_slices_record_durations(self):
        t = live.LiveTimeline()
        with t.ui_slice("x"):
            pass
        name, start, duration = t.ui_slices[0]
        self.assertEqual(name, "x")
        self.assertGreaterEqual(duration, 0.0)
        self.assertEqual(t.summary()["ui_slice_ms"]["n"], 1)

    def test_the_ring_is_bounded(self):
        t = live.LiveTimeline(capacity=3)
        for i in range(10):
            t.add(live.LiveFrame(request_id=i))
        self.assertEqual([f.request_id for f in t.frames], [7, 8, 9])
        self.assertEqual(t.find(8).request_id, 8)
        self.assertIsNone(t.find(1))


if __name__ == "__main__":
    unittest.main()
