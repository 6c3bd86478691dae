# gridwatch — the two commands:
#   make demo   set up this Debian 12 machine, build (release) and run the bundled demo
#   make test   set up, then run the whole test suite (what .ci/run does)
SHELL := /bin/bash
CARGO ?= $(shell command -v cargo || echo $(HOME)/.cargo/bin/cargo)
CONFIG ?= config/demo.toml

.PHONY: demo test setup build check bench clean

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

demo: build
	./target/release/gridwatch run --config $(CONFIG)

check: build
	./target/release/gridwatch check --config $(CONFIG)

test: setup
	$(CARGO) test --locked --all-targets -- --test-threads=2

bench: build
	./target/release/gridwatch bench --video /usr/share/doc/opencv-doc/examples/data/vtest.avi \
	  --model models/nanodet-g-coco-416 --frames 795

clean:
	$(CARGO) clean
