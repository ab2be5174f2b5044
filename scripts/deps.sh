#!/usr/bin/env bash
# Installs what building and testing jamrig needs, skipping what is already there:
# the Debian/Ubuntu packages (ALSA and JACK headers, JACK itself for the live tests,
# cmake and libclang for Ableton Link's C++), and a Rust toolchain through rustup
# if there is no cargo, a small General MIDI SoundFont (timgm6mb-soundfont) with
# FluidSynth for the SoundFont cross-check and benchmarks (with `time` for their
# peak memory), and Strudel's reference implementation of the mini-notation
# from npm (scripts/strudel.sh). Safe to run any number of times.
set -euo pipefail

packages=(pkg-config g++ cmake libasound2-dev libclang-dev jackd2 libjack-jackd2-dev libasound2-plugins iproute2 util-linux
    timgm6mb-soundfont fluidsynth time)
# Node.js runs Strudel, the reference for the mini-notation conformance test; a
# Node.js installed some other way (with its own npm) is fine too.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # jackd2 asks about realtime scheduling; answer for it.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $sudo debconf-set-selections 2>/dev/null || true
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        :
    else
        echo "installing the Rust toolchain (rustup)" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt >&2
    fi
fi

# The ALSA sequencer, for the default build's MIDI out test (tests/midi_out_alsa.rs):
# load its kernel module if it is there to load (containers and CI machines often
# have none; scripts/test then says that test did not run).
if [ ! -e /dev/snd/seq ] && command -v modprobe >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo -n"
    fi
    $sudo modprobe snd-seq 2>/dev/null || true
fi

"$(dirname "$0")/strudel.sh"
