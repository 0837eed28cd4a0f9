#!/usr/bin/env bash
# All tests: the Python suite (slow and real-data checks included; real-data ones
# skip without ../shared/data; tests/deploy/test_android_parity.py runs the Java scheduler on
# real submodels), the Android core's and JVM runtime's JUnit tests and the app's plain-Kotlin logic tests
# and its resource check (aapt).
set -uo pipefail
export RAVIT_WITH_JAVA=1
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" || exit 1
set +e  # setup.sh sets -e; a Python failure must not skip the Java tests.
# Two workers (one per CI core), one test file per worker at a time: module fixtures are
# built once, and the suite takes about 60 % of a serial run.
python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=30 "$@"
py=$?
bash android_demo/core/run_tests.sh
java=$?
bash android_demo/jvm/run_tests.sh || java=1
bash android_demo/app/run_logic_tests.sh || java=1
bash android_demo/app/check_resources.sh || java=1
echo "python tests exit $py, java tests exit $java"
[ $py -eq 0 ] && [ $java -eq 0 ]
