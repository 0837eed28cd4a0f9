#!/usr/bin/env bash
# Compiles the app's plain-Kotlin logic (InferenceOptions.kt, logic/) against the core with
# kotlinc and runs its JUnit tests (app/src/test) on a desktop JVM. The Android-bound classes
# (MainActivity, ClassifierViewModel, RAViTClassifier, ...) need Android Studio.
#
#   bash android_demo/app/run_logic_tests.sh
#
# kotlinc: $KOTLINC, else on PATH, else /opt/ravit-kotlin (scripts/setup.sh installs npm's
# kotlin-compiler there). Without one it says so and exits 0 (skipped). Output: build/logic/.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/app/src/main/java/dev/ravit/demo"
BUILD="$HERE/build/logic"
KOTLINC="${KOTLINC:-$(command -v kotlinc || true)}"
[[ -n "$KOTLINC" ]] || KOTLINC=/opt/ravit-kotlin/node_modules/kotlin-compiler/bin/kotlinc
if [[ ! -x "$KOTLINC" ]]; then
  echo "SKIPPED app logic tests: no kotlinc (npm install --prefix /opt/ravit-kotlin kotlin-compiler, or set KOTLINC)." >&2
  exit 0
fi
KLIB="$(cd "$(dirname "$(readlink -f "$KOTLINC")")/../lib" && pwd)"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
GSON_JAR="${GSON_JAR:-/usr/share/java/gson.jar}"
rm -rf "$BUILD" && mkdir -p "$BUILD/core" "$BUILD/classes"
javac --release 17 -encoding UTF-8 -cp "$GSON_JAR" -d "$BUILD/core" $(find "$HERE/../core/src/main/java" -name '*.java')
# Only files that import nothing from Android: a stray android.* import fails here.
"$KOTLINC" -jvm-target 17 -Werror -cp "$BUILD/core:$JUNIT_JAR:$HAMCREST_JAR" -d "$BUILD/classes" \
  "$SRC/InferenceOptions.kt" "$SRC"/logic/*.kt "$HERE"/app/src/test/java/dev/ravit/demo/*.kt 2>&1 | grep -v '^warning: unable to find kotlin-stdlib' || true
[[ -f "$BUILD/classes/dev/ravit/demo/AppLogicTest.class" ]] || { echo "kotlinc failed" >&2; exit 1; }
java -cp "$BUILD/classes:$BUILD/core:$GSON_JAR:$KLIB/kotlin-stdlib.jar:$JUNIT_JAR:$HAMCREST_JAR" \
  org.junit.runner.JUnitCore dev.ravit.demo.AppLogicTest
