#!/usr/bin/env bash
# Creates .venv in the repository root and installs everything the project needs.
# Idempotent: re-running only installs what is missing. Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# System libraries: libusb for tflite-support's native metadata module; Java test
# dependencies for the Android core (JUnit 4, Hamcrest, Gson; JNA for the JVM runtime over libLiteRt.so).
need_pkgs=()
ldconfig -p 2>/dev/null | grep -q "libusb-1.0.so.0" || need_pkgs+=(libusb-1.0-0)
if [ "${RAVIT_WITH_JAVA:-0}" = 1 ]; then
  [ -f /usr/share/java/junit4.jar ] || need_pkgs+=(junit4)
  [ -f /usr/share/java/hamcrest-core.jar ] || need_pkgs+=(libhamcrest-java)
  [ -f /usr/share/java/gson.jar ] || need_pkgs+=(libgoogle-gson-java)
  [ -f /usr/share/java/jna.jar ] || need_pkgs+=(libjna-java)
  command -v aapt >/dev/null || need_pkgs+=(aapt)
  [ -f /usr/share/android-framework-res/framework-res.apk ] || need_pkgs+=(android-framework-res)
  command -v javac >/dev/null || need_pkgs+=(openjdk-17-jdk-headless)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing system packages: ${need_pkgs[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}") >/dev/null
  else
    echo "Please install the system packages: sudo apt-get install ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

# Kotlin compiler (npm's kotlin-compiler) for the Android app's plain-Kotlin logic tests.
if [ "${RAVIT_WITH_JAVA:-0}" = 1 ] && ! command -v kotlinc >/dev/null \
    && [ ! -x /opt/ravit-kotlin/node_modules/kotlin-compiler/bin/kotlinc ]; then
  if [ "$(id -u)" = 0 ] && command -v npm >/dev/null; then
    echo "Installing kotlin-compiler with npm into /opt/ravit-kotlin"
    npm install -s --prefix /opt/ravit-kotlin kotlin-compiler >/dev/null
  else
    echo "No kotlinc: the app logic tests will be skipped (npm install --prefix /opt/ravit-kotlin kotlin-compiler)." >&2
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.ravit-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "Installing Python packages into .venv (first run: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --no-deps tflite-support==0.4.4 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location\|BuildBackendWarning\|^ \|^$" || true
  .venv/bin/python -c "import ravit_keras, tensorflow, keras, ai_edge_litert, jax" 2>/dev/null \
    || { echo "Installation failed: see the pip output above." >&2; exit 1; }
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
