// Promises that re-check a condition whenever their owner has news (a message, a line of
// output, a close), with a timeout: the waiting loop shared by the test clients.

type Settle<T> = { resolve: (v: T) => void; reject: (e: Error) => void };

export class Waiters {
  private list: Array<() => void> = [];

  /** Something changed: re-run every pending check. */
  notify(): void {
    for (const w of [...this.list]) w();
  }

  /**
   * Runs `check` now and on every notify() until it returns true; `check` settles the promise
   * itself (possibly later, after returning true). Rejects with `onTimeout()` after timeoutMs.
   */
  wait<T>(check: (s: Settle<T>) => boolean, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const remove = (): void => {
        this.list = this.list.filter((w) => w !== waiter);
      };
      const settle: Settle<T> = {
        resolve: (v) => {
          clearTimeout(timer);
          remove();
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          remove();
          reject(e);
        },
      };
      const timer = setTimeout(() => settle.reject(onTimeout()), timeoutMs);
      const waiter = (): void => {
        if (check(settle)) remove();
      };
      if (!check(settle)) this.list.push(waiter);
    });
  }
}
