/** A small typed event emitter: `on` returns the function that removes the listener. */
export class Emitter<Events extends { [name: string]: unknown[] }> {
  private listeners: { [K in keyof Events]?: Set<(...args: Events[K]) => void> } = {};

  on<K extends keyof Events>(name: K, listener: (...args: Events[K]) => void): () => void {
    const set = (this.listeners[name] ??= new Set());
    set.add(listener);
    return () => set.delete(listener);
  }

  protected emit<K extends keyof Events>(name: K, ...args: Events[K]): void {
    for (const listener of [...(this.listeners[name] ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        // One failing listener must not stop the others, nor the client.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}
