#!/usr/bin/env bash
# Builds the JVM runtime (build.sh) and runs its JUnit 4 tests on the real libLiteRt.so.
#
#   bash android_demo/jvm/run_tests.sh
#
# libLiteRt.so: -Dravit.litert.lib / $RAVIT_LITERT_LIB, else the project's .venv (see
# LiteRtC.findLibrary). Tests that need it are skipped, saying why, when it is missing.
# Prints JUnit's summary and "N passed, F failed"; exits non-zero on a failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$HERE/build"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
for jar in "$JUNIT_JAR" "$HAMCREST_JAR"; do
  [[ -f "$jar" ]] || { echo "Missing $jar: install junit4 libhamcrest-java." >&2; exit 2; }
done
CP="$(bash "$HERE/build.sh" | tail -1)"
rm -rf "$BUILD/test-classes"
mkdir -p "$BUILD/test-classes"
find "$HERE/src/test/java" -name '*.java' > "$BUILD/test-sources.txt"
javac --release 17 -Xlint:all -encoding UTF-8 -cp "$CP:$JUNIT_JAR:$HAMCREST_JAR" -d "$BUILD/test-classes" @"$BUILD/test-sources.txt"
CLASSES=$(cd "$HERE/src/test/java" && find . -name '*Test.java' | sed -e 's|^\./||' -e 's|\.java$||' -e 's|/|.|g' | sort)
set +e
# Run from the repository root so the .venv search finds the project's environment.
(cd "$HERE/../.." && java -cp "$CP:$BUILD/test-classes:$HERE/../core/src/test/resources:$JUNIT_JAR:$HAMCREST_JAR" \
  org.junit.runner.JUnitCore $CLASSES 2>&1 | grep -v '^\(INFO\|WARNING\): \[') | tee "$BUILD/junit.txt"
STATUS=${PIPESTATUS[0]}
set -e
bash "$HERE/../junit_summary.sh" "$BUILD/junit.txt" "$STATUS"
