#!/usr/bin/env bash
# Compiles the app's manifest and resources with Debian's aapt against Android's
# framework-res.apk, then checks that every R.<type>.<name> and view-binding property the
# Kotlin sources use exists. What this cannot check (the Material theme, AndroidX, the APK)
# is listed in ../README.md.
#
#   bash android_demo/app/check_resources.sh
#
# Needs aapt and android-framework-res (apt-get install aapt android-framework-res; installed
# when missing and running as root). Exits 0 with "SKIPPED" when they cannot be had.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MAIN="$HERE/app/src/main"
BUILD="$HERE/build/aapt"
FRAMEWORK="${FRAMEWORK_RES:-/usr/share/android-framework-res/framework-res.apk}"
if { ! command -v aapt >/dev/null || [[ ! -f "$FRAMEWORK" ]]; } && [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq aapt android-framework-res >/dev/null 2>&1 || true
fi
if ! command -v aapt >/dev/null || [[ ! -f "$FRAMEWORK" ]]; then
  echo "SKIPPED resource check: needs aapt and $FRAMEWORK (apt-get install aapt android-framework-res)." >&2
  exit 0
fi
NAMESPACE=$(grep -Eo 'namespace *= *"[^"]+"' "$HERE/app/build.gradle.kts" | grep -Eo '"[^"]+"' | tr -d '"')
rm -rf "$BUILD" && mkdir -p "$BUILD/gen"
cp -r "$MAIN/res" "$BUILD/res"
# AGP takes the package from build.gradle.kts's namespace; aapt wants it in the manifest.
sed "s|<manifest |<manifest package=\"$NAMESPACE\" |" "$MAIN/AndroidManifest.xml" > "$BUILD/AndroidManifest.xml"
# Stand-ins for the library resources the app uses (Material Components); only Gradle resolves the real ones.
cat > "$BUILD/res/values/zz_library_stubs.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?>
<resources>
    <style name="Theme.Material3.DayNight.NoActionBar" parent="android:Theme.DeviceDefault.NoActionBar" />
    <attr name="textAppearanceTitleMedium" format="reference" />
    <attr name="textAppearanceBodySmall" format="reference" />
</resources>
XML
aapt package -f -M "$BUILD/AndroidManifest.xml" -S "$BUILD/res" -I "$FRAMEWORK" -J "$BUILD/gen" \
  -F "$BUILD/resources.ap_"
R_JAVA=$(find "$BUILD/gen" -name R.java)
python3 - "$R_JAVA" "$MAIN/java" "$MAIN/res/layout" <<'PY'
import re, sys
from pathlib import Path
r_java, src, layouts = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
declared, kind = set(), None
for line in r_java.read_text().splitlines():
    m = re.match(r"\s*public static final class (\w+)", line)
    if m:
        kind = m.group(1)
    m = re.match(r"\s*public static final int(?:\[\])? (\w+)", line)
    if m and kind:
        declared.add(f"{kind}.{m.group(1)}")
problems, used, bound = [], 0, 0
camel = lambda s: re.sub(r"_(\w)", lambda m: m.group(1).upper(), s)
bindings = {}
for xml in layouts.glob("*.xml"):
    cls = "".join(p.capitalize() for p in xml.stem.split("_")) + "Binding"
    bindings[cls] = {camel(i) for i in re.findall(r'android:id="@\+id/(\w+)"', xml.read_text())} | {"root"}
for kt in sorted(src.rglob("*.kt")):
    text = kt.read_text()
    for kind_, name in re.findall(r"(?<![\w.])R\.(\w+)\.(\w+)", text):
        used += 1
        if f"{kind_}.{name}" not in declared:
            problems.append(f"{kt.name}: R.{kind_}.{name} is not a resource of the app")
    for cls in set(re.findall(r"\b(\w+Binding)\b", text)) & set(bindings):
        for prop in set(re.findall(r"\bbinding\.(\w+)", text)):
            bound += 1
            if prop not in bindings[cls]:
                problems.append(f"{kt.name}: binding.{prop} is no view id of the layout behind {cls}")
    for cls in set(re.findall(r"databinding\.(\w+Binding)", text)) - set(bindings):
        problems.append(f"{kt.name}: {cls} has no layout")
if problems:
    sys.exit("Resource check failed:\n" + "\n".join(problems))
print(f"aapt compiled the manifest and {len(declared)} resources; {used} R references and {bound} "
      f"view-binding properties of the Kotlin sources exist.")
PY
