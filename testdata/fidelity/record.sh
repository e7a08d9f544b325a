#!/usr/bin/env bash
# Records real tools' output through a pseudo-terminal of 120x40, as a
# person at a terminal would see it, into NAME.tty (the bytes the terminal
# received). fidelity_test.go replays each through tmux (the reference
# terminal) and through the run page, and compares what they show.
# Run by hand; needs the tools below, a local HTTP server on 127.0.0.1:8765
# serving big.bin (python3 -m http.server 8765), Debian's python3-rich
# and python3-tqdm, and cargo.
set -euo pipefail
cd "$(dirname "$0")"
rec() { # rec NAME COMMAND
  script -q -e -c "stty cols 120 rows 40; $2" /dev/null > "$1.tty" || true
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$work" init -q src && for i in $(seq 1 300); do head -c 20000 /dev/urandom > "$work/src/f$i"; done
git -C "$work/src" add . && git -C "$work/src" -c user.name=x -c user.email=x@x commit -qm init
rec git-clone "git clone --progress file://$work/src $work/dst"
rec curl "curl --limit-rate 8M -o /dev/null http://127.0.0.1:8765/big.bin"
rec wget "wget --limit-rate=8m -O /dev/null http://127.0.0.1:8765/big.bin"
printf 'int main(void) { int x = "s"; return y; }\n' > "$work/bad.c"
rec gcc "gcc -c -o /dev/null $work/bad.c"
rec dd "dd if=/dev/urandom of=/dev/null bs=1M count=1200 status=progress"
rec tqdm "seq 1 3000000 | /usr/bin/python3 -m tqdm --total 3000000 --mininterval 0.05 > /dev/null"
rec rich-progress "/usr/bin/python3 -c 'import time
from rich.progress import Progress
with Progress() as p:
    ts = [p.add_task(n, total=100) for n in (\"download\", \"unpack\", \"install\")]
    for i in range(40):
        for k, t in enumerate(ts): p.update(t, advance=(k + 1) * 1.2)
        time.sleep(0.02)
print(\"done\")'"
rec rich-table "/usr/bin/python3 -c 'from rich.console import Console; from rich.table import Table
t = Table(title=\"Deploys\"); t.add_column(\"env\"); t.add_column(\"version\", style=\"green\")
t.add_row(\"staging\", \"v1.4.2\"); t.add_row(\"production\", \"v1.4.1\"); Console().print(t)'"
(cd "$work" && cargo new -q --vcs none hello && cd hello && rec2=1 true)
rec cargo "cd $work/hello && cargo build --offline"
rec ls-color "ls --color=auto -la /usr/share/doc/git | head -20"
rec rich-status "/usr/bin/python3 -c 'import time
from rich.console import Console
c = Console()
with c.status(\"deploying to staging\") as s:
    for i in range(3):
        time.sleep(0.3); c.log(f\"step {i} done\")
c.print(\"[bold green]deployed[/]\")'"
rec apt "apt-get install --reinstall -y -o Dpkg::Progress-Fancy=1 -o APT::Color=1 hello"
(mkdir -p "$work/npm" && cd "$work/npm" && npm init -y > /dev/null)
rec npm "cd $work/npm && npm install --no-audit --no-fund --loglevel=http left-pad"
# No registry's host name, nor this machine's own apt source files, are kept.
sed -i -E "s#(https?://)[^/ ]+#\\1mirror.example#g; s/Ignoring file '[^']*'/Ignoring file 'old.list.disabled'/g" apt.tty npm.tty
