#!/usr/bin/env bash
# Compiles the core and the JVM runtime (LiteRT C API through JNA) into build/classes.
#
#   bash android_demo/jvm/build.sh      # prints the runtime classpath on its last line
#
# Needs a JDK 17+, Gson and JNA (Debian: libgoogle-gson-java libjna-java, installed with
# apt-get when missing and running as root; or set GSON_JAR / JNA_JAR).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CORE="$HERE/../core"
BUILD="$HERE/build"
GSON_JAR="${GSON_JAR:-/usr/share/java/gson.jar}"
JNA_JAR="${JNA_JAR:-/usr/share/java/jna.jar}"
if [[ ! -f "$GSON_JAR" || ! -f "$JNA_JAR" ]] && [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
  echo "Installing libgoogle-gson-java libjna-java with apt-get..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgoogle-gson-java libjna-java >&2 \
    || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgoogle-gson-java libjna-java >&2; }
fi
for jar in "$GSON_JAR" "$JNA_JAR"; do
  [[ -f "$jar" ]] || { echo "Missing $jar: install libgoogle-gson-java libjna-java or set GSON_JAR/JNA_JAR." >&2; exit 2; }
done
command -v javac >/dev/null || { echo "javac not found: install a JDK 17 or newer." >&2; exit 2; }
rm -rf "$BUILD/classes"
mkdir -p "$BUILD/classes"
find "$CORE/src/main/java" "$HERE/src/main/java" -name '*.java' > "$BUILD/main-sources.txt"
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -cp "$GSON_JAR:$JNA_JAR" -d "$BUILD/classes" @"$BUILD/main-sources.txt"
echo "$BUILD/classes:$GSON_JAR:$JNA_JAR"
