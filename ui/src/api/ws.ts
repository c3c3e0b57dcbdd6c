// WebSockets that reconnect by themselves (backoff 0.5 s -> 5 s), one hook per stream.
import { useEffect, useRef, useState } from "react";

export type SocketState = "connecting" | "open" | "closed";

export function wsUrl(path: string): string {
  const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${window.location.host}${path}`;
}

/**
 * Subscribe to a stream; `onMessage` gets each JSON frame.  `path` changes (e.g. another
 * market) reconnect.  Returns the socket state for an indicator.
 */
export function useSocket(
  path: string | null,
  onMessage: (msg: any) => void,
): SocketState {
  const [state, setState] = useState<SocketState>("connecting");
  const handler = useRef(onMessage);
  handler.current = onMessage;
  useEffect(() => {
    if (path === null) return;
    let ws: WebSocket | null = null;
    let stopped = false;
    let delay = 500;
    let timer: number | undefined;
    const connect = () => {
      setState("connecting");
      ws = new WebSocket(wsUrl(path));
      ws.onopen = () => {
        delay = 500;
        setState("open");
      };
      ws.onmessage = (ev) => {
        try {
          handler.current(JSON.parse(ev.data));
        } catch {
          /* a frame we cannot parse is skipped, never fatal */
        }
      };
      ws.onerror = () => ws?.close();
      ws.onclose = () => {
        setState("closed");
        if (!stopped) {
          timer = window.setTimeout(connect, delay);
          delay = Math.min(delay * 2, 5000);
        }
      };
    };
    connect();
    return () => {
      stopped = true;
      if (timer !== undefined) window.clearTimeout(timer);
      if (ws) {
        ws.onclose = null;
        ws.close();
      }
    };
  }, [path]);
  return state;
}

/** Poll a loader every `ms` (and on demand via the returned reload). */
export function usePoll<T>(load: () => Promise<T | undefined>, ms: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let alive = true;
    const run = async () => {
      try {
        const v = await load();
        if (alive && v !== undefined) setData(v);
      } catch {
        /* the next poll retries */
      }
    };
    run();
    const id = window.setInterval(run, ms);
    return () => {
      alive = false;
      window.clearInterval(id);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [ms, tick, ...deps]);
  return [data, () => setTick((t) => t + 1)] as const;
}
