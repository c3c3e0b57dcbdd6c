import { useEffect, useState } from "react";
import { StatusBar } from "./components/StatusBar";
import { Agent } from "./pages/Agent";
import { Data } from "./pages/Data";
import { Markets } from "./pages/Markets";
import { Models } from "./pages/Models";
import { Training } from "./pages/Training";

const PAGES = ["markets", "agent", "training", "models", "data"] as const;
type Page = (typeof PAGES)[number];

function currentPage(): { page: Page; arg: string | null } {
  const [p, arg] = window.location.hash.replace(/^#\/?/, "").split("/");
  const page = (PAGES as readonly string[]).includes(p) ? (p as Page) : "markets";
  return { page, arg: arg ? decodeURIComponent(arg) : null };
}

export function App() {
  const [route, setRoute] = useState(currentPage());
  useEffect(() => {
    const on = () => setRoute(currentPage());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return (
    <div className="app">
      <header>
        <span className="brand">kalshi-rl</span>
        <nav>
          {PAGES.map((p) => (
            <a key={p} href={`#/${p}`} className={route.page === p ? "active" : ""} data-testid={`nav-${p}`}>
              {p[0].toUpperCase() + p.slice(1)}
            </a>
          ))}
        </nav>
      </header>
      <StatusBar />
      <main>
        {route.page === "markets" && <Markets ticker={route.arg} />}
        {route.page === "agent" && <Agent />}
        {route.page === "training" && <Training />}
        {route.page === "models" && <Models />}
        {route.page === "data" && <Data />}
      </main>
    </div>
  );
}
