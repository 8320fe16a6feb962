// Human progress on stderr: a redrawn bar when stderr is a terminal, otherwise a line at every tenth of the way,
// so logs stay readable and stdout stays pure JSON.
const MiB = 1024 * 1024;

export interface Progress {
  update(done: number, total: number): void;
  finish(): void;
}

export function progress(label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  const started = Date.now();
  let lastTenth = -1;
  let drawn = false;
  let lastDraw = 0;
  return {
    update(done, total) {
      const fraction = total > 0 ? Math.min(1, done / total) : 1;
      const rate = done / MiB / Math.max(0.001, (Date.now() - started) / 1000);
      const text = `${(done / MiB).toFixed(1)}/${(total / MiB).toFixed(1)} MiB, ${rate.toFixed(1)} MiB/s`;
      if (tty) {
        const now = Date.now();
        if (now - lastDraw < 100 && fraction < 1) return;
        lastDraw = now;
        const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - 40));
        const full = Math.round(fraction * width);
        stream.write(
          `\r${label} [${"#".repeat(full)}${".".repeat(width - full)}] ${String(Math.floor(fraction * 100)).padStart(3)}% ${text}\x1b[K`,
        );
        drawn = true;
      } else {
        const tenth = Math.floor(fraction * 10);
        if (tenth === lastTenth) return;
        lastTenth = tenth;
        stream.write(`${label}: ${tenth * 10}% (${text})\n`);
      }
    },
    finish() {
      if (tty && drawn) stream.write("\n");
    },
  };
}
