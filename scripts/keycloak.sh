#!/usr/bin/env bash
# Fetches the pinned Keycloak server (deploy/keycloak/keycloak-version, or KEYCLOAK_VERSION) from
# Maven Central with Maven, unpacks it under var/keycloak/ and builds it once for `kc.sh start-dev`
# so that the tests' starts skip Quarkus' augmentation. Prints the install folder; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${KEYCLOAK_VERSION:-$(tr -d "[:space:]" < deploy/keycloak/keycloak-version)}"
artifact="org.keycloak:keycloak-quarkus-dist:${version}:zip"
root="$PWD/var/keycloak"
home="$root/keycloak-$version"
stamp="$home/.hf-ready"

fail() {
  echo "keycloak.sh: $*" >&2
  exit 1
}

if [ -f "$stamp" ]; then
  echo "$home"
  exit 0
fi

# A fresh Debian/Ubuntu machine may lack Maven (and with it a JDK): as root, install it.
if ! command -v mvn >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "keycloak.sh: installing Maven (Debian package maven) to fetch Keycloak $version" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q maven >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q maven >/dev/null 2>&1; } \
    || fail "installing Maven failed (apt-get install -y maven); install it yourself"
fi
command -v mvn >/dev/null 2>&1 \
  || fail "Maven (mvn) is needed to fetch Keycloak $version ($artifact); install it (Debian: apt-get install -y maven)"

# Keycloak 26 runs on Java 17, 21 or 25: JAVA_HOME if set, else the java on PATH.
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
command -v "$java_bin" >/dev/null 2>&1 \
  || fail "Java 17+ is needed to run Keycloak $version and $java_bin was not found; install a JDK (Debian: apt-get install -y openjdk-17-jdk-headless) or set JAVA_HOME"
java_major="$("$java_bin" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[ "${java_major:-0}" -ge 17 ] 2>/dev/null \
  || fail "Keycloak $version needs Java 17 or newer; $java_bin is version ${java_major:-unknown} (set JAVA_HOME to a JDK 17+)"

mkdir -p "$root"
exec 9>"$root/.lock"
# Two callers at once (two make targets, two terminals) wait for each other instead of racing.
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ -f "$stamp" ]; then
  echo "$home"
  exit 0
fi

work="$(mktemp -d "$root/.fetch.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM -- "-$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "keycloak.sh: fetching $artifact with Maven (cached in the local Maven repository)" >&2
# In an empty folder so that no pom.xml around us changes what Maven does.
mvn_log="$root/maven-$version.log"
if ! (cd "$work" && mvn -q -B dependency:copy "-Dartifact=$artifact" "-DoutputDirectory=$work/zip" \
  >"$mvn_log" 2>&1); then
  fail "Maven could not fetch $artifact (Maven Central unreachable, or no such version); see $mvn_log"
fi
zip="$work/zip/keycloak-quarkus-dist-$version.zip"
[ -f "$zip" ] || fail "Maven reported success but $zip is missing"

if command -v unzip >/dev/null 2>&1; then
  unzip -q "$zip" -d "$work/unpacked"
else
  python3 -m zipfile -e "$zip" "$work/unpacked"
  chmod +x "$work/unpacked/keycloak-$version"/bin/*.sh
fi
unpacked="$work/unpacked/keycloak-$version"
[ -x "$unpacked/bin/kc.sh" ] || fail "the zip of $artifact holds no keycloak-$version/bin/kc.sh"

# The first start-dev of a fresh unpack augments the server (about 10-20 s) and only then runs it.
# Do that here, once: start it, stop it as soon as the augmented server begins to run.
echo "keycloak.sh: building Keycloak $version for start-dev (once)" >&2
if command -v setsid >/dev/null 2>&1; then launch=(setsid); else launch=(); fi
# The client compiler only and the serial collector, as harness/keycloak.py starts the test
# servers (the same augmentation for less CPU), before the caller's own options; not the
# collector when the caller chose one (the JVM refuses two).
quick_opts="-XX:TieredStopAtLevel=1"
if ! printf '%s %s' "${JAVA_OPTS:-}" "${JAVA_OPTS_APPEND:-}" | grep -Eq -- '-XX:\+Use[A-Za-z0-9]*GC'; then
  quick_opts="$quick_opts -XX:-UseG1GC -XX:+UseSerialGC"
fi
JAVA_OPTS_APPEND="$quick_opts ${JAVA_OPTS_APPEND:-}" \
  "${launch[@]}" "$unpacked/bin/kc.sh" start-dev --http-host=127.0.0.1 --http-port=0 \
  --http-management-port=0 >"$work/build.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 300))
until grep -q "Running the server in development mode" "$work/build.log"; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cp "$work/build.log" "$root/build-$version.log"
    fail "Keycloak $version's build for start-dev failed; see $root/build-$version.log"
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "Keycloak $version's build for start-dev took more than 300 s"
  sleep 0.2
done
kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
# The build run may have begun a database and logs; each test server gets its own data folder.
rm -rf "$unpacked/data"
touch "$unpacked/.hf-ready"

rm -rf "$home"
mv "$unpacked" "$home"
echo "$home"
