#!/usr/bin/env python3
"""Reference baseline for `gridwatch bench`: the straightforward Python loop
(opencv-python decode -> resize -> onnxruntime NanoDet-g -> numpy decode -> cv2 NMS) over every
frame of a video, single process, no overlap. Prints frames/s on one line: `python-baseline fps=…`.

Run through `make bench`, which installs its packages in a venv under third_party/.
"""
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)


def main(video, model, size=416, threads=2, reg_max=10, thr=0.35):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    cap = cv2.VideoCapture(video)
    n, people = 0, 0
    t0 = time.perf_counter()
    while True:
        ok, frame = cap.read()  # BGR
        if not ok:
            break
        h0, w0 = frame.shape[:2]
        x = cv2.resize(frame, (size, size)).astype(np.float32)
        x = ((x - MEAN) / STD).transpose(2, 0, 1)[None]
        outs = sess.run(None, {inp: x})
        boxes, scores, classes = [], [], []
        cls_outs = [o for o in outs if o.shape[-1] == 80]
        reg_outs = [o for o in outs if o.shape[-1] == 4 * (reg_max + 1)]
        for cls, reg in zip(sorted(cls_outs, key=lambda o: -o.shape[1]), sorted(reg_outs, key=lambda o: -o.shape[1])):
            cells = cls.shape[1]
            stride = int(round(size / np.sqrt(cells)))
            gw = size // stride
            cls = cls[0]
            best = cls.max(1)
            keep = np.where(best > thr)[0]
            if keep.size == 0:
                continue
            d = reg[0][keep].reshape(-1, 4, reg_max + 1)
            d = np.exp(d - d.max(2, keepdims=True))
            d = (d / d.sum(2, keepdims=True)) @ np.arange(reg_max + 1, dtype=np.float32) * stride
            cx = (keep % gw + 0.5) * stride
            cy = (keep // gw + 0.5) * stride
            b = np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)
            b *= [w0 / size, h0 / size, w0 / size, h0 / size]
            boxes.append(b)
            scores.append(best[keep])
            classes.append(cls[keep].argmax(1))
        if boxes:
            b = np.concatenate(boxes)
            s = np.concatenate(scores)
            c = np.concatenate(classes)
            xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
            idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), s.tolist(), c.tolist(), thr, 0.6)
            people += int(sum(1 for i in np.array(idx).flatten() if c[i] == 0))
        n += 1
    dt = time.perf_counter() - t0
    print(f"python-baseline frames={n} seconds={dt:.2f} fps={n / dt:.1f} person_detections={people}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], threads=int(sys.argv[3]) if len(sys.argv) > 3 else 2)
