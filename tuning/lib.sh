# shellcheck shell=bash
# Shared by tuning/apply, check, revert and irq-affinity; sourced, never run. What is installed
# where, how kernel settings are read and compared, and where apply keeps what it replaced.

TUNING_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname -- "$TUNING_DIR")
PROG=tuning/${0##*/}
STATE_DIR=${GAVEL_TUNING_STATE:-/var/lib/gavel-tuning}
SYSCTL_CONF=$TUNING_DIR/sysctl.d/60-gavel.conf
ALL_PARTS=(sysctl limits systemd postgresql redis)

# Kept per network namespace by every kernel Gavel supports (5.x and later), so a test can set
# them inside a namespace of its own without touching the host. net.core.rmem_max/wmem_max only
# became per namespace recently, netdev_max_backlog, fs.* and conntrack's maximum never are.
NETNS_KEYS=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.tcp_rmem net.ipv4.tcp_wmem
  net.ipv4.tcp_tw_reuse net.ipv4.tcp_fin_timeout net.ipv4.tcp_max_tw_buckets
  net.ipv4.ip_local_port_range)

# Capacities: limits, queue lengths and buffer sizes that Gavel needs at least this large. apply
# never lowers one: a higher value in force is kept, and multi-value settings are compared field
# by field (tcp_rmem "min default max": each field keeps the higher of the host's and Gavel's).
CAPACITY_KEYS=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.core.netdev_max_backlog
  fs.file-max fs.nr_open net.core.rmem_max net.core.wmem_max net.ipv4.tcp_rmem net.ipv4.tcp_wmem
  net.ipv4.tcp_max_tw_buckets net.ipv4.tcp_max_orphans net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_buckets)
# Ranges "low high": only ever widened (the lower start and the higher end are kept).
RANGE_KEYS=(net.ipv4.ip_local_port_range)

# Kernel settings Redis checks at start-up, with its warning; check and apply give the reason.
# shellcheck disable=SC2034 # used by apply and check
declare -A REDIS_WHY=(
  [vm.overcommit_memory]="Redis warns at start-up unless it is 1: a background save or replication (fork) may fail under low memory"
)
THP_WANT=madvise
# shellcheck disable=SC2034 # used by apply and check
THP_WHY="Redis warns at start-up when it is 'always': latency spikes and memory growth (copy-on-write of huge pages after fork)"

# Unexpected failures are errors (exit 2), never mistaken for "differs" (1) or "not root" (1).
set -E
trap 'printf "%s: unexpected failure at line %s: %s\n" "$PROG" "$LINENO" "$BASH_COMMAND" >&2; exit 2' ERR

die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 2
}

note() { printf 'note: %s\n' "$*"; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    printf '%s: must be run as root: it reads and changes kernel settings and files under /etc\n' \
      "$PROG" >&2
    exit 1
  fi
}

# "tuning/sysctl.d/60-gavel.conf" rather than an absolute path, for messages.
shown() { printf '%s' "${1#"$REPO_DIR"/}"; }

# Collapses runs of blanks to one space and trims both ends: /proc shows tabs between the fields
# of tcp_rmem, the drop-in spaces.
normalize() {
  local -a words
  read -r -a words <<<"$1" || true
  printf '%s' "${words[*]}"
}

# --- Options shared by apply, check and revert ---------------------------------------------

PARTS=()
ROOT=""
SYSROOT=""
NETNS_SAFE=0

# add_part PART [EXTRA_ALLOWED...]
add_part() {
  local want=$1 p
  shift
  for p in "${ALL_PARTS[@]}" "$@"; do
    if [ "$p" = "$want" ]; then
      PARTS+=("$want")
      return 0
    fi
  done
  die "--only takes one of: ${ALL_PARTS[*]} $* (got '$want')"
}

set_root() {
  [ -n "$1" ] || die "--root needs a directory"
  [ -d "$1" ] || die "--root $1: not a directory"
  ROOT=$(cd -- "$1" && pwd -P)
  [ "$ROOT" != / ] || ROOT=""
}

set_sysroot() {
  [ -n "$1" ] || die "--sysroot needs a directory"
  [ -d "$1" ] || die "--sysroot $1: not a directory"
  SYSROOT=$(cd -- "$1" && pwd -P)
  [ "$SYSROOT" != / ] || SYSROOT=""
}

selected() {
  local p
  [ "${#PARTS[@]}" -gt 0 ] || return 0
  for p in "${PARTS[@]}"; do
    [ "$p" != "$1" ] || return 0
  done
  return 1
}

# --- Kernel settings -----------------------------------------------------------------------

S_KEYS=()
S_WANT=()

# Reads the drop-in: "key = value" lines; a leading "-" (skip when missing) needs no special
# handling here because every missing key is skipped with a note.
load_sysctl_conf() {
  local line key value n=0 name
  name=$(shown "$SYSCTL_CONF")
  [ -r "$SYSCTL_CONF" ] || die "cannot read $name"
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=$(normalize "$line")
    case $line in '' | '#'* | ';'*) continue ;; esac
    [[ $line == *=* ]] || die "$name:$n: not a 'key = value' line"
    key=$(normalize "${line%%=*}")
    value=$(normalize "${line#*=}")
    key=${key#-}
    [[ $key =~ ^[A-Za-z0-9_.-]+$ ]] || die "$name:$n: bad key '$key'"
    S_KEYS+=("$key")
    S_WANT+=("$value")
  done <"$SYSCTL_CONF"
  [ "${#S_KEYS[@]}" -gt 0 ] || die "$name: no settings"
}

sysctl_path() { printf '/proc/sys/%s' "${1//.//}"; }

in_list() {
  local want=$1 k
  shift
  for k in "$@"; do
    [ "$k" != "$want" ] || return 0
  done
  return 1
}

is_netns_key() { in_list "$1" "${NETNS_KEYS[@]}"; }
is_range_key() { in_list "$1" "${RANGE_KEYS[@]}"; }
is_capacity_key() { in_list "$1" "${CAPACITY_KEYS[@]}" || is_range_key "$1"; }

# Why a key is left alone here, or nothing when it can be read and set.
sysctl_skip_reason() {
  local path
  if [ "$NETNS_SAFE" = 1 ] && ! is_netns_key "$1"; then
    printf 'not per network namespace; --netns-safe'
    return 0
  fi
  path=$(sysctl_path "$1")
  if [ ! -e "$path" ]; then
    case $1 in
      net.netfilter.nf_conntrack_*)
        printf 'not in this kernel or namespace (nf_conntrack is not loaded; nothing to size)' ;;
      *) printf 'not in this kernel or namespace' ;;
    esac
  elif [ ! -w "$path" ] && [ "$(id -u)" -eq 0 ]; then
    printf 'read-only in this namespace'
  fi
}

sysctl_read() {
  local v
  v=$(cat -- "$(sysctl_path "$1")" 2>/dev/null) || return 1
  normalize "$v"
}

# Compares two unsigned decimal numbers of any length (fs.file-max may be 2^63-1, past what
# some tools handle): prints -1, 0 or 1.
num_cmp() {
  local a=$1 b=$2
  while [[ $a == 0?* ]]; do a=${a#0}; done
  while [[ $b == 0?* ]]; do b=${b#0}; done
  if [ "${#a}" -ne "${#b}" ]; then
    if [ "${#a}" -lt "${#b}" ]; then printf -- -1; else printf 1; fi
  elif [ "$a" = "$b" ]; then
    printf 0
  elif [[ $a < $b ]]; then
    printf -- -1
  else
    printf 1
  fi
}

# Field names for messages: "max" rather than "field 3".
field_name() {
  case $1 in
    net.ipv4.tcp_rmem | net.ipv4.tcp_wmem)
      case $2 in 0) printf min ;; 1) printf default ;; 2) printf max ;; *) printf 'field %s' "$(($2 + 1))" ;; esac ;;
    net.ipv4.ip_local_port_range)
      case $2 in 0) printf start ;; *) printf end ;; esac ;;
    *) printf 'field %s' "$(($2 + 1))" ;;
  esac
}

# capacity_merge KEY CURRENT WANTED: prints the value apply sets for a capacity, which lowers
# nothing: field by field the higher of the two (for a range: the lower start and the higher
# end). Fails when the two cannot be compared field by field (not numbers, or not as many).
capacity_merge() {
  local key=$1 i c
  local -a cf wf of=()
  read -r -a cf <<<"$2" || true
  read -r -a wf <<<"$3" || true
  [ "${#cf[@]}" -gt 0 ] && [ "${#cf[@]}" -eq "${#wf[@]}" ] || return 1
  if is_range_key "$key" && [ "${#cf[@]}" -ne 2 ]; then return 1; fi
  for i in "${!cf[@]}"; do
    [[ ${cf[$i]} =~ ^[0-9]+$ && ${wf[$i]} =~ ^[0-9]+$ ]] || return 1
    c=$(num_cmp "${cf[$i]}" "${wf[$i]}")
    if is_range_key "$key" && [ "$i" = 0 ]; then
      if [ "$c" = 1 ]; then of+=("${wf[$i]}"); else of+=("${cf[$i]}"); fi
    else
      if [ "$c" = -1 ]; then of+=("${wf[$i]}"); else of+=("${cf[$i]}"); fi
    fi
  done
  printf '%s' "${of[*]}"
}

# What capacity_merge keeps of CURRENT over WANTED, for messages: "max 33554432 is higher than
# Gavel's 6291456", "start 1024 is lower than Gavel's 10240"; empty when nothing is kept.
kept_fields() {
  local key=$1 i c name
  local -a cf wf of=()
  read -r -a cf <<<"$2" || true
  read -r -a wf <<<"$3" || true
  for i in "${!cf[@]}"; do
    [[ ${cf[$i]} =~ ^[0-9]+$ && ${wf[$i]:-} =~ ^[0-9]+$ ]] || continue
    c=$(num_cmp "${cf[$i]}" "${wf[$i]}")
    name=""
    if [ "${#cf[@]}" -gt 1 ]; then name="$(field_name "$key" "$i") "; fi
    if is_range_key "$key" && [ "$i" = 0 ]; then
      if [ "$c" = -1 ]; then of+=("$name${cf[$i]} is lower than Gavel's ${wf[$i]}"); fi
    elif [ "$c" = 1 ]; then
      of+=("$name${cf[$i]} is higher than Gavel's ${wf[$i]}")
    fi
  done
  [ "${#of[@]}" -gt 0 ] || return 0
  printf '%s' "${of[0]}"
  for ((i = 1; i < ${#of[@]}; i++)); do printf ', %s' "${of[$i]}"; done
}

# sysctl_target KEY CURRENT WANTED: the value the kernel should hold. For a capacity it is the
# merge (the host's higher fields kept); for anything else the wanted value. Fails when a
# capacity cannot be compared.
sysctl_target() {
  if is_capacity_key "$1"; then
    capacity_merge "$1" "$2" "$3"
  else
    printf '%s' "$3"
  fi
}

# True when the current value already meets the wanted one: equal, or for a capacity at least
# as large in every field (a range: covers it).
sysctl_met() {
  local key=$1 cur=$2 want=$3 target
  if is_capacity_key "$key"; then
    target=$(capacity_merge "$key" "$cur" "$want") || return 1
    [ "$target" = "$cur" ]
    return
  fi
  [ "$cur" = "$want" ]
}

# The drop-in as apply installs it: the shipped file, except that a capacity this host already
# has higher keeps the host's value (with a comment saying so), so the file never lowers it at
# the next boot either. Kernel settings that this kernel or namespace lacks keep Gavel's value.
# Writes to OUT; sets RENDER_KEPT to the keys whose line was changed.
RENDER_KEPT=()
render_sysctl_conf() {
  local out=$1 line norm key value dash cur target
  RENDER_KEPT=()
  : >"$out"
  while IFS= read -r line || [ -n "$line" ]; do
    norm=$(normalize "$line")
    case $norm in '' | '#'* | ';'*) printf '%s\n' "$line" >>"$out"; continue ;; esac
    key=$(normalize "${norm%%=*}")
    value=$(normalize "${norm#*=}")
    dash=""
    if [[ $key == -* ]]; then dash=-; key=${key#-}; fi
    if is_capacity_key "$key" && cur=$(sysctl_read "$key") &&
      target=$(capacity_merge "$key" "$cur" "$value") && [ "$target" != "$value" ]; then
      printf '# Kept by tuning/apply, which never lowers a capacity: this host had %s; Gavel ships %s.\n' \
        "$cur" "$value" >>"$out"
      printf '%s%s = %s\n' "$dash" "$key" "$target" >>"$out"
      RENDER_KEPT+=("$key")
    else
      printf '%s\n' "$line" >>"$out"
    fi
  done <"$SYSCTL_CONF"
}

# Temporary files, removed when the script exits.
TEMP_FILES=()
cleanup_temp() {
  if [ "${#TEMP_FILES[@]}" -gt 0 ]; then rm -f -- "${TEMP_FILES[@]}"; fi
}
trap cleanup_temp EXIT
# make_temp VAR: creates a temporary file and puts its name in VAR (not through $(...), whose
# subshell would forget it and leave the file behind).
make_temp() {
  local f
  f=$(mktemp "${TMPDIR:-/tmp}/gavel-tuning.XXXXXX")
  TEMP_FILES+=("$f")
  printf -v "$1" '%s' "$f"
}

sysctl_write() {
  sysctl -q -w "$1=$2" >/dev/null
}

# Other sysctl files read after ours at boot that set the same keys: they win over this drop-in.
sysctl_overrides() {
  local dir f name key pattern
  local -a files=()
  for dir in "$ROOT/etc/sysctl.d" "$ROOT/run/sysctl.d" "$ROOT/usr/local/lib/sysctl.d" \
    "$ROOT/usr/lib/sysctl.d" "$ROOT/lib/sysctl.d"; do
    [ -d "$dir" ] || continue
    for f in "$dir"/*.conf; do
      [ -f "$f" ] || continue
      name=${f##*/}
      if [[ $name > 60-gavel.conf ]]; then files+=("$f"); fi
    done
  done
  if [ -f "$ROOT/etc/sysctl.conf" ]; then files+=("$ROOT/etc/sysctl.conf"); fi
  [ "${#files[@]}" -gt 0 ] || return 0
  for key in "${S_KEYS[@]}"; do
    pattern="^[[:space:]]*-?${key//./[./]}[[:space:]]*="
    for f in "${files[@]}"; do
      if grep -Eq -- "$pattern" "$f" 2>/dev/null; then
        note "$key is also set in $f, which is read after 60-gavel.conf and wins at boot"
      fi
    done
  done
}

# --- Transparent huge pages (a sysfs file, not a sysctl) -----------------------------------

thp_path() { printf '%s/sys/kernel/mm/transparent_hugepage/enabled' "$SYSROOT"; }

# The mode in force: the bracketed word of "always [madvise] never".
thp_mode() {
  local v
  v=$(cat -- "$(thp_path)" 2>/dev/null) || return 1
  if [[ $v =~ \[([a-z_]+)\] ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    normalize "$v"
  fi
}

# madvise and never both silence Redis's warning; madvise still lets a program that asks for
# huge pages (madvise(MADV_HUGEPAGE)) have them.
thp_met() { [ "$1" = madvise ] || [ "$1" = never ]; }

thp_skip_reason() {
  if [ "$NETNS_SAFE" = 1 ] && [ -z "$SYSROOT" ]; then
    printf 'host-wide, not per network namespace; --netns-safe'
  elif [ ! -e "$(thp_path)" ]; then
    printf 'not in this kernel (built without transparent huge pages): nothing to set'
  fi
}

thp_persist_note() {
  note "$(thp_path) lasts until reboot. To keep $THP_WANT: install -m 0644" \
    "tuning/systemd/gavel-thp.service /etc/systemd/system/ && systemctl enable gavel-thp;" \
    "or add transparent_hugepage=$THP_WANT to the kernel command line (GRUB_CMDLINE_LINUX in" \
    "/etc/default/grub, then update-grub). Restart Redis for its start-up check to see it."
}

# --- Files ---------------------------------------------------------------------------------

# Prints "SOURCE<TAB>DEST" for what a part installs, or "-<TAB>REASON" when it is skipped.
part_files() {
  local confd
  case $1 in
    sysctl) printf '%s\t%s\n' "$SYSCTL_CONF" "$ROOT/etc/sysctl.d/60-gavel.conf" ;;
    limits) printf '%s\t%s\n' "$TUNING_DIR/limits.d/gavel.conf" "$ROOT/etc/security/limits.d/gavel.conf" ;;
    systemd) printf '%s\t%s\n' "$TUNING_DIR/systemd/gavel.service" "$ROOT/etc/systemd/system/gavel.service" ;;
    postgresql)
      confd=$(for d in "$ROOT"/etc/postgresql/*/main/conf.d; do
        if [ -d "$d" ]; then printf '%s\n' "$d"; fi
      done | sort -V | tail -n 1)
      if [ -n "$confd" ]; then
        printf '%s\t%s\n' "$TUNING_DIR/postgresql/60-gavel.conf" "$confd/60-gavel.conf"
      else
        printf -- '-\tno %s/etc/postgresql/<version>/main/conf.d (PostgreSQL not installed here?)\n' "$ROOT"
      fi
      ;;
    redis)
      if [ -d "$ROOT/etc/redis" ]; then
        printf '%s\t%s\n' "$TUNING_DIR/redis/gavel.conf" "$ROOT/etc/redis/gavel.conf"
      else
        printf -- '-\tno %s/etc/redis (redis-server not installed here?)\n' "$ROOT"
      fi
      ;;
  esac
}

# Debian's redis-server reads only redis.conf; gavel.conf counts once redis.conf includes it.
redis_include_note() {
  local conf="$ROOT/etc/redis/redis.conf"
  [ -r "$conf" ] || return 0
  if ! grep -Eq '^[[:space:]]*include[[:space:]]+/etc/redis/gavel\.conf[[:space:]]*$' "$conf"; then
    note "$conf does not include /etc/redis/gavel.conf yet: add the line" \
      "'include /etc/redis/gavel.conf' at its end (later lines win)"
  fi
}

# Debian's postgresql.conf reads conf.d/ through include_dir; a hand-edited one may not.
pg_include_note() {
  local conf
  conf="$(dirname -- "$(dirname -- "$1")")/postgresql.conf"
  [ -r "$conf" ] || return 0
  if ! grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" "$conf"; then
    note "$conf does not read conf.d/: add include_dir = 'conf.d' to it"
  fi
}

# Later files in the same conf.d are read after ours, and their settings win.
pg_override_note() {
  local confd param f
  confd=$(dirname -- "$1")
  for f in "$confd"/*.conf; do
    [ -f "$f" ] || continue
    if [[ ${f##*/} > 60-gavel.conf ]]; then
      while IFS= read -r param; do
        if grep -Eq "^[[:space:]]*${param}[[:space:]]*=" "$f" 2>/dev/null; then
          note "$param is also set in $f, which is read after 60-gavel.conf and wins"
        fi
      done < <(sed -nE 's/^([a-z_]+)[[:space:]]*=.*/\1/p' "$TUNING_DIR/postgresql/60-gavel.conf")
    fi
  done
}

# "missing", "differs" or "same": the installed file against its source.
file_state() {
  if [ ! -e "$2" ] && [ ! -L "$2" ]; then
    printf missing
  elif [ -f "$2" ] && cmp -s -- "$1" "$2"; then
    printf same
  else
    printf differs
  fi
}

# --- Records of what apply replaced --------------------------------------------------------
# STATE/sysctl/KEY                  a kernel setting's value before apply first changed it
# STATE/files/PART/backup/DEST      a file apply overwrote, as it was before the first overwrite
# STATE/files/PART/absent/DEST      marks a file apply created
# STATE/files/PART/dirs             directories apply created, in creation order
# STATE/irq/orig/PATH               an IRQ/RPS/XPS setting before irq-affinity first changed it
# STATE/sysfs/orig/PATH             a /sys setting (transparent huge pages) before apply changed it
# The first record always wins, so revert returns to the state before the first apply.

# Records may hold copies of configuration with secrets in it: private to root. Files and
# directories apply installs get their modes explicitly and are not affected by this umask. The
# record directories themselves are made on the first record, so a run that changes nothing
# leaves none behind.
state_private() {
  umask 077
}

record_sysctl() {
  local f="$STATE_DIR/sysctl/$1"
  if [ -e "$f" ]; then return 0; fi
  mkdir -p -- "$STATE_DIR/sysctl"
  printf '%s\n' "$2" >"$f.tmp"
  mv -f -- "$f.tmp" "$f"
}

# record_sysfs PATH VALUE: succeeds with FRESH=1 when this call made the record.
record_sysfs() {
  local f="$STATE_DIR/sysfs/orig$1"
  FRESH=0
  if [ -e "$f" ]; then return 0; fi
  mkdir -p -- "$(dirname -- "$f")"
  printf '%s\n' "$2" >"$f.tmp"
  mv -f -- "$f.tmp" "$f"
  # shellcheck disable=SC2034 # read by apply
  FRESH=1
}

record_file() {
  local part=$1 dest=$2 base="$STATE_DIR/files/$1"
  if [ -e "$base/backup$dest" ] || [ -L "$base/backup$dest" ] || [ -e "$base/absent$dest" ]; then
    return 0
  fi
  if [ -e "$dest" ] || [ -L "$dest" ]; then
    mkdir -p -- "$(dirname -- "$base/backup$dest")"
    cp -P -p -- "$dest" "$base/backup$dest"
  else
    mkdir -p -- "$(dirname -- "$base/absent$dest")"
    : >"$base/absent$dest"
  fi
}

# The directories that creating DIR would make, outermost first.
missing_dirs() {
  local d=$1
  local -a out=()
  while [ -n "$d" ] && [ "$d" != / ] && [ ! -d "$d" ]; do
    out=("$d" "${out[@]}")
    d=$(dirname -- "$d")
  done
  [ "${#out[@]}" -eq 0 ] || printf '%s\n' "${out[@]}"
}

make_dirs() {
  local part=$1 d list="$STATE_DIR/files/$1/dirs"
  while IFS= read -r d; do
    [ -n "$d" ] || continue
    mkdir -m 0755 -- "$d"
    mkdir -p -- "$STATE_DIR/files/$part"
    grep -qxF -- "$d" "$list" 2>/dev/null || printf '%s\n' "$d" >>"$list"
  done < <(missing_dirs "$2")
}

# Writes SOURCE to DEST through a temporary file in the same directory, so readers see the old
# file or the new one, never half of one.
put_file() {
  local tmp="$2.gavel-tuning.tmp"
  install -m 0644 -- "$1" "$tmp"
  mv -f -- "$tmp" "$2"
}

# --- CPU lists -----------------------------------------------------------------------------

# "0-3,6" -> "0 1 2 3 6"; at most 4096 CPUs, so every loop here is bounded.
expand_cpus() {
  local item a b c out=() list=${1//[[:space:]]/,}
  local -a items
  IFS=, read -r -a items <<<"$list"
  for item in "${items[@]}"; do
    [ -n "$item" ] || continue
    if [[ $item =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=$((10#${BASH_REMATCH[1]}))
      b=$((10#${BASH_REMATCH[2]}))
    elif [[ $item =~ ^[0-9]+$ ]]; then
      a=$((10#$item))
      b=$a
    else
      return 1
    fi
    ((a <= b && b < 4096)) || return 1
    for ((c = a; c <= b; c++)); do out+=("$c"); done
  done
  [ "${#out[@]}" -gt 0 ] || return 1
  printf '%s\n' "${out[@]}" | sort -n -u | tr '\n' ' ' | sed 's/ $//'
}
