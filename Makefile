# gridwatch — the two commands:
#   make demo   set up this Debian 12 machine, build (release) and run the bundled demo
#   make test   set up, then run the whole test suite (what .ci/run does)
SHELL := /bin/bash
CARGO ?= $(shell command -v cargo || echo $(HOME)/.cargo/bin/cargo)
CONFIG ?= config/demo.toml

.PHONY: demo test lint setup build check bench eval install clean fuzz

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

demo: build
	./target/release/gridwatch run --config $(CONFIG)

check: build
	./target/release/gridwatch check --config $(CONFIG)

# House rules first (formatting, lints), then every test.
test: setup lint
	$(CARGO) test --locked --all-targets -- --test-threads=2

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	python3 tools/import-cycles.py --skip-tests

# Quality on labelled real footage (needs ../shared): tracking on PETS09-S2L1 (MOTA/IDF1)
# and the scenario evaluator over the hand-labelled shared traffic clips (counts, events),
# the fire clips (time to alarm), every non-fire clip looped to 68 min (false alarms per
# camera-hour of the built-in fire detector, alone and verifying the AGPL test model), the
# people clips (falls, person down, night presence), and the masker's recall on
# hand-labelled frames (faces and plates masked, checked by CenterFace; cost per still).
eval: build
	./target/release/gridwatch eval mot --video /usr/share/doc/opencv-doc/examples/data/vtest.avi \
	    --gt ../shared/eval/pets09-s2l1/gt-frames-0001-0400.txt --frames 1-400
	./target/release/gridwatch eval mot --video /usr/share/doc/opencv-doc/examples/data/vtest.avi \
	    --gt ../shared/eval/pets09-s2l1/gt-frames-0001-0400.txt --frames 1-400 -m $(BENCH_FP32)
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/traffic.toml
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/traffic.toml \
	    --model default=$(BENCH_FP32)/model.toml
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/fire.toml
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/fire-negatives.toml
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/fire-verified.toml
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/fire-negatives-verified.toml
	./target/release/gridwatch eval scenarios --manifest tests/scenarios/people.toml
	./target/release/gridwatch eval masking --labels tests/masking/labels.toml --sweep 30

# Longer fuzzing than `make test` runs (docs/security.md "Fuzzing and schema testing"):
# FUZZ_SECS per parser target with a fresh random seed (printed on failure; failing inputs
# are saved in target/fuzz-failures/), then the API schema fuzzer with more examples.
FUZZ_SECS ?= 300
fuzz: setup
	seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); echo "fuzz seed $$seed"; \
	GRIDWATCH_FUZZ_SECS=$(FUZZ_SECS) GRIDWATCH_FUZZ_CASES=1000000000 GRIDWATCH_FUZZ_SEED=$$seed \
	GRIDWATCH_FUZZ_RECOVER_CASES=1000 $(CARGO) test --locked --test fuzz -- --nocapture --test-threads=2 && \
	GRIDWATCH_SCHEMA_EXAMPLES=1000 GRIDWATCH_SCHEMA_SECS=$(FUZZ_SECS) GRIDWATCH_SCHEMA_SEED=$$seed \
	$(CARGO) test --locked --test api_schema -- --nocapture

BENCH_VIDEO ?= /usr/share/doc/opencv-doc/examples/data/vtest.avi
# The shipped detector (int8 on lit frames, fp32 on low-light ones) and the fp32 model.
BENCH_MODEL ?= models/nanodet-g-coco-416-int8
BENCH_FP32 ?= models/nanodet-g-coco-416
BENCH_ASPECT ?= models/nanodet-g-coco-416-aspect
# The ONNX file a model manifest names.
onnx_of = $(1)/$(shell sed -n 's/^file = "\(.*\)"/\1/p' $(1)/model.toml)
PYVENV := third_party/pyvenv

$(PYVENV)/bin/python:
	python3 -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q onnxruntime==1.32.0 opencv-python-headless numpy

# gridwatch's bench with the shipped detector, then the plain Python loop on the same video
# with the fp32 model (the issue-16 baseline) and with the int8 file, and their ratios; then
# the fp32 and aspect-fitted models through the same pipeline.
bench: build $(PYVENV)/bin/python
	./target/release/gridwatch bench --video $(BENCH_VIDEO) --model $(BENCH_MODEL) --frames 795 --width 768 | tee third_party/bench.txt
	$(PYVENV)/bin/python tools/bench_python.py $(BENCH_VIDEO) $(call onnx_of,$(BENCH_FP32)) 2 | tee -a third_party/bench.txt
	$(PYVENV)/bin/python tools/bench_python.py $(BENCH_VIDEO) $(call onnx_of,$(BENCH_MODEL)) 2 | sed 's/^python-baseline/python-baseline-int8/' | tee -a third_party/bench.txt
	./target/release/gridwatch bench --video $(BENCH_VIDEO) --model $(BENCH_FP32) --frames 795 --width 768 | tee third_party/bench-fp32.txt
	./target/release/gridwatch bench --video $(BENCH_VIDEO) --model $(BENCH_ASPECT) --frames 795 --width 768 | tee third_party/bench-aspect.txt
	./target/release/gridwatch bench-record --secs 30 | tee -a third_party/bench.txt
	./target/release/gridwatch bench-uplink --changes 100000 --cameras 4 --video test-videos/pets09-s2l1.mp4 --model models/nanodet-g-coco-320 --secs 120 | tee -a third_party/bench.txt
	./target/release/gridwatch bench-connections --video test-videos/pets09-s2l1.mp4 --model models/nanodet-g-coco-320 --clients 1000 --secs 60 | tee -a third_party/bench.txt
	@python3 -c "import re;t=open('third_party/bench.txt').read();f=lambda s,r:float(re.search(r,s).group(1));g=f(t,r'full pipeline: .*?: ([0-9.]+) fps');p=f(t,r'python-baseline .*fps=([0-9.]+)');q=f(t,r'python-baseline-int8 .*fps=([0-9.]+)');print(f'gridwatch pipeline (shipped) / python loop fp32 = {g:.1f} / {p:.1f} = {g/p:.2f} (python loop with the int8 file: {q:.1f}, {g/q:.2f})')"
	@python3 -c "import re;t=open('third_party/bench.txt').read();f=lambda s,r:float(re.search(r,s).group(1));p=f(t,r'python-baseline .*fps=([0-9.]+)');[print(f'gridwatch {n} pipeline / python loop fp32 = {g:.1f} / {p:.1f} = {g/p:.2f}') for n in ('fp32','aspect') for g in [f(open(f'third_party/bench-{n}.txt').read(),r'full pipeline: .*?: ([0-9.]+) fps')]]"

# Installed layout: $(PREFIX)/gridwatch with the ONNX Runtime library in $(PREFIX)/lib/ (found
# next to the binary at run time, no environment variable), models and a sample config.
PREFIX ?= /opt/gridwatch
install: build
	install -d $(PREFIX)/lib $(PREFIX)/models $(PREFIX)/config $(PREFIX)/test-videos
	install -m 755 target/release/gridwatch $(PREFIX)/gridwatch
	install -m 644 third_party/onnxruntime/libonnxruntime.so.1.32.0 $(PREFIX)/lib/libonnxruntime.so
	cp -r models/nanodet-g-coco-416 models/nanodet-g-coco-416-int8 models/nanodet-g-coco-320 models/blazeface-back-256 \
		models/movenet-multipose-lightning-256 models/blazepose-detector-224 $(PREFIX)/models/
	install -m 644 test-videos/pets09-s2l1.mp4 $(PREFIX)/test-videos/
	sed -e 's|\.\./demo-data|/var/lib/gridwatch|' config/demo.toml > $(PREFIX)/config/example.toml
	@echo "installed to $(PREFIX): $(PREFIX)/gridwatch check --config $(PREFIX)/config/example.toml"

clean:
	$(CARGO) clean
