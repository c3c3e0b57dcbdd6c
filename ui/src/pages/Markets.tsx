import { useCallback, useRef, useState } from "react";
import { ago, api, duration, px, qty, usd, type Schemas } from "../api/client";
import { usePoll, useSocket } from "../api/ws";
import { Plot } from "../components/Plot";

type Summary = Schemas["MarketSummary"];
type Ladder = Schemas["Ladder"];

export function Markets({ ticker }: { ticker: string | null }) {
  return ticker ? <MarketDetail ticker={ticker} /> : <MarketList />;
}

const DONE = new Set(["closed", "determined", "settled", "finalized", "amended", "disputed"]);

// a market past its close (the exchange sends no event at close: the status may still
// say active) or finished: its book is over, not broken
function closed(m: Summary): boolean {
  return DONE.has(m.status ?? "") || (m.seconds_to_close !== null && m.seconds_to_close <= 0);
}

function BookPill({ m }: { m: Summary }) {
  if (m.valid) return <span className="pill ok">valid</span>;
  if (closed(m)) return <span className="pill" title="the market closed; its book is no longer updated">closed</span>;
  return <span className="pill bad">invalid</span>;
}

function MarketList() {
  const [data] = usePoll(async () => (await api.GET("/rl/markets")).data, 1000);
  // open markets first, then the ones that closed (each group in the API's order)
  const rows = data ? [...data.filter((m) => !closed(m)), ...data.filter(closed)] : data;
  return (
    <section>
      <h2>Markets</h2>
      <table className="grid" data-testid="markets-table">
        <thead>
          <tr>
            <th>ticker</th><th>status</th><th>book</th><th>YES bid</th><th>YES ask</th>
            <th>spread</th><th>depth Y/N (5 lv)</th><th>last trade</th><th>closes in</th><th>updated</th>
          </tr>
        </thead>
        <tbody>
          {(rows ?? []).map((m: Summary) => (
            <tr key={m.ticker} data-testid="market-row" onClick={() => (window.location.hash = `#/markets/${encodeURIComponent(m.ticker)}`)}>
              <td className="mono link">{m.ticker}</td>
              <td>{m.status === "active" && closed(m) ? "closed" : m.status ?? "–"}</td>
              <td><BookPill m={m} /></td>
              <td className="num">{px(m.yes_bid)}</td>
              <td className="num">{px(m.yes_ask)}</td>
              <td className="num">{px(m.spread)}</td>
              <td className="num">{qty(m.yes_depth)} / {qty(m.no_depth)}</td>
              <td className="num">{px(m.last_trade_price)} <span className="muted">{ago(m.last_trade_ms)}</span></td>
              <td className="num">{duration(m.seconds_to_close)}</td>
              <td className="num muted">{ago(m.last_update_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {rows && rows.length === 0 && <p className="muted">No markets in this node yet.</p>}
    </section>
  );
}

interface BookFrame {
  ticker: string;
  valid: boolean;
  seq: number;
  n_updates: number;
  yes: [number, number][];
  no: [number, number][];
  yes_bid: number | null;
  yes_ask: number | null;
  spread: number | null;
  mid: number | null;
  server_ts_ms: number;
}

const KEEP = 900;

function MarketDetail({ ticker }: { ticker: string }) {
  const [book, setBook] = useState<BookFrame | null>(null);
  const hist = useRef<{ t: number[]; mid: (number | null)[]; spread: (number | null)[] }>({ t: [], mid: [], spread: [] });
  const [, force] = useState(0);
  const onFrame = useCallback((m: any) => {
    if (m.type !== "book" || m.ticker !== ticker) return;
    setBook(m as BookFrame);
    const h = hist.current;
    const t = m.server_ts_ms / 1000;
    if (h.t.length && t <= h.t[h.t.length - 1]) return;
    h.t.push(t);
    h.mid.push(m.mid === null ? null : m.mid / 1000);
    h.spread.push(m.spread === null ? null : m.spread / 1000);
    if (h.t.length > KEEP) {
      h.t.shift(); h.mid.shift(); h.spread.shift();
    }
    force((x) => x + 1);
  }, [ticker]);
  const sock = useSocket(`/rl/ws/orderbook?markets=${encodeURIComponent(ticker)}&interval_ms=200`, onFrame);
  const [detail] = usePoll(
    async () => (await api.GET("/rl/markets/{ticker}", { params: { path: { ticker } } })).data,
    2000,
    [ticker],
  );

  const h = hist.current;
  const fills = fillSeries(h.t, detail);
  return (
    <section>
      <h2>
        <a href="#/markets">Markets</a> / <span className="mono">{ticker}</span>{" "}
        {book && <span className={`pill ${book.valid ? "ok" : "bad"}`}>{book.valid ? "valid" : "invalid"}</span>}
        <span className="muted small"> seq <span data-testid="book-seq">{book?.seq ?? "–"}</span> · updates{" "}
          <span data-testid="book-updates">{book?.n_updates ?? "–"}</span> · ws {sock}</span>
      </h2>
      <div className="row">
        <div className="col ladders">
          <LadderView title="YES bids" side="yes" levels={book?.yes ?? []} orders={detail?.orders ?? []} testId="ladder-yes" />
          <LadderView title="NO bids" side="no" levels={book?.no ?? []} orders={detail?.orders ?? []} testId="ladder-no" />
        </div>
        <div className="col grow">
          <div className="kv">
            <span>YES bid <b>{px(book?.yes_bid)}</b></span>
            <span>YES ask <b>{px(book?.yes_ask)}</b></span>
            <span>spread <b>{px(book?.spread)}</b></span>
            <span>mid <b>{book?.mid == null ? "–" : (book.mid / 1000).toFixed(4)}</b></span>
          </div>
          <Plot
            title="mid and spread ($); agent fills marked"
            series={[
              { label: "mid", stroke: "#4ea1ff" },
              { label: "spread", stroke: "#f2a444" },
              { label: "agent fills (YES px)", stroke: "#ff5c8a", points: true },
            ]}
            data={[h.t, h.mid, h.spread, fills]}
            testId="mid-chart"
          />
          <div className="row">
            <div className="col grow">
              <h3>Trade tape</h3>
              <table className="grid small" data-testid="trade-tape">
                <thead><tr><th>time</th><th>YES px</th><th>count</th><th>taker</th></tr></thead>
                <tbody>
                  {(detail?.trades ?? []).slice(0, 25).map((t, i) => (
                    <tr key={i}><td>{new Date(t.ts_ms).toLocaleTimeString()}</td><td className="num">{px(t.yes_price)}</td>
                      <td className="num">{qty(t.count)}</td><td className={t.taker_side === "yes" ? "ok" : "bad"}>{t.taker_side}</td></tr>
                  ))}
                </tbody>
              </table>
            </div>
            <div className="col grow">
              <h3>Agent fills here</h3>
              <table className="grid small" data-testid="agent-fills">
                <thead><tr><th>time</th><th>side</th><th>px</th><th>count</th><th>fee</th></tr></thead>
                <tbody>
                  {(detail?.fills ?? []).slice(0, 25).map((f, i) => (
                    <tr key={i}><td>{new Date(f.ts_ms).toLocaleTimeString()}</td><td>{f.action} {f.side}</td>
                      <td className="num">{px(f.price)}</td><td className="num">{qty(f.count)}</td><td className="num">{usd(f.fee)}</td></tr>
                  ))}
                </tbody>
              </table>
            </div>
          </div>
        </div>
      </div>
    </section>
  );
}

/** Agent fills on the chart's time axis: the YES-scale price at the nearest frame time. */
function fillSeries(t: number[], detail: Ladder | undefined): (number | null)[] {
  const out: (number | null)[] = t.map(() => null);
  if (!detail || t.length === 0) return out;
  for (const f of detail.fills) {
    const ts = f.ts_ms / 1000;
    if (ts < t[0]) continue;
    let i = t.findIndex((x) => x >= ts);
    if (i < 0) i = t.length - 1;
    out[i] = (f.side === "yes" ? f.price : 1000 - f.price) / 1000;
  }
  return out;
}

function LadderView({ title, side, levels, orders, testId }: {
  title: string; side: "yes" | "no"; levels: [number, number][]; orders: Schemas["RestingOrder"][]; testId: string;
}) {
  const max = Math.max(1, ...levels.map((l) => l[1]));
  const mine = new Map<number, Schemas["RestingOrder"][]>();
  for (const o of orders) {
    // a buy of side s at p rests on ladder s at p; a sell of s at p is a bid on the other
    // ladder at 1 - p (Kalshi books hold bids only)
    const ladder = o.action === "buy" ? o.side : o.side === "yes" ? "no" : "yes";
    const at = o.action === "buy" ? o.price : 1000 - o.price;
    if (ladder === side) mine.set(at, [...(mine.get(at) ?? []), o]);
  }
  return (
    <div className="ladder" data-testid={testId}>
      <h3>{title}</h3>
      <table className="grid small">
        <thead><tr><th>price</th><th>qty</th><th>agent</th></tr></thead>
        <tbody>
          {levels.map(([p, q]) => (
            <tr key={p} className={mine.has(p) ? "mine" : ""}>
              <td className="num">{px(p)}</td>
              <td className="num depth">
                <span className={`bar ${side}`} style={{ width: `${(100 * q) / max}%` }} />
                <span className="v">{qty(q)}</span>
              </td>
              <td className="num">
                {(mine.get(p) ?? []).map((o) => (
                  <span key={o.order_id} className="tag" title="agent's resting order: remaining / queue ahead">
                    {qty(o.remaining)}{o.queue_ahead !== null && o.queue_ahead !== undefined ? ` q${qty(o.queue_ahead)}` : ""}
                  </span>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {levels.length === 0 && <p className="muted">empty</p>}
    </div>
  );
}
