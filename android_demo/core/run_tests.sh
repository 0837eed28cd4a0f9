#!/usr/bin/env bash
# Compiles the plain-JVM core and its JUnit 4 tests with javac and runs them.
#
#   bash android_demo/core/run_tests.sh
#
# Needs a JDK 17+ and the Debian jars gson, junit4 and hamcrest-core under
# /usr/share/java (installed with apt-get when missing and running as root; or point
# GSON_JAR / JUNIT_JAR / HAMCREST_JAR at other copies). Output goes to build/ (ignored).
# Prints JUnit's summary, then one line "N passed, F failed"; exits non-zero on failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$HERE/build"
GSON_JAR="${GSON_JAR:-/usr/share/java/gson.jar}"
JUNIT_JAR="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
HAMCREST_JAR="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"

if [[ ! -f "$GSON_JAR" || ! -f "$JUNIT_JAR" || ! -f "$HAMCREST_JAR" ]]; then
  if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
    echo "Installing libgoogle-gson-java junit4 libhamcrest-java with apt-get..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y libgoogle-gson-java junit4 libhamcrest-java >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y libgoogle-gson-java junit4 libhamcrest-java >&2; }
  fi
fi
for jar in "$GSON_JAR" "$JUNIT_JAR" "$HAMCREST_JAR"; do
  if [[ ! -f "$jar" ]]; then
    echo "Missing $jar: install libgoogle-gson-java junit4 libhamcrest-java (Debian/Ubuntu) or set GSON_JAR/JUNIT_JAR/HAMCREST_JAR." >&2
    exit 2
  fi
done
command -v javac >/dev/null || { echo "javac not found: install a JDK 17 or newer." >&2; exit 2; }

rm -rf "$BUILD/classes" "$BUILD/test-classes"
mkdir -p "$BUILD/classes" "$BUILD/test-classes"
LIBS="$GSON_JAR:$JUNIT_JAR:$HAMCREST_JAR"

find "$HERE/src/main/java" -name '*.java' > "$BUILD/main-sources.txt"
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -cp "$GSON_JAR" -d "$BUILD/classes" @"$BUILD/main-sources.txt"

find "$HERE/src/test/java" -name '*.java' > "$BUILD/test-sources.txt"
javac --release 17 -Xlint:all -encoding UTF-8 -cp "$BUILD/classes:$LIBS" -d "$BUILD/test-classes" @"$BUILD/test-sources.txt"

# Every *Test class, as a fully qualified name.
CLASSES=$(cd "$HERE/src/test/java" && find . -name '*Test.java' | sed -e 's|^\./||' -e 's|\.java$||' -e 's|/|.|g' | sort)

set +e
java -cp "$BUILD/classes:$BUILD/test-classes:$HERE/src/test/resources:$LIBS" org.junit.runner.JUnitCore $CLASSES \
  | tee "$BUILD/junit.txt"
STATUS=${PIPESTATUS[0]}
set -e

bash "$HERE/../junit_summary.sh" "$BUILD/junit.txt" "$STATUS"
