// Parse and render Mermaid diagrams with the real mermaid library in headless Chromium.
//
//   node tests/js/mermaid_check.mjs FILE...
//
// Prints one JSON object: {"results": [{file, ok, error, type, tasks, sections}]} where
// `tasks` are the task labels as drawn in the SVG (text content, entities decoded) and
// `sections` the section titles.  Chromium is Debian's (/usr/bin/chromium, or
// $CHROMIUM); nothing is downloaded and the page makes no network request.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const mermaidJs = join(here, "node_modules", "mermaid", "dist", "mermaid.min.js");
const files = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
});
try {
  const page = await browser.newPage();
  await page.route("**/*", (route) => route.abort());  // no network at all
  await page.setContent("<!doctype html><html><body><div id=out></div></body></html>");
  await page.addScriptTag({ content: readFileSync(mermaidJs, "utf8") });
  await page.evaluate(() => window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" }));
  const results = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const r = await page.evaluate(async (src) => {
      try {
        const parsed = await window.mermaid.parse(src);
        const { svg } = await window.mermaid.render("d" + Math.random().toString(36).slice(2), src);
        const out = document.getElementById("out");
        out.innerHTML = svg;
        const tasks = [...out.querySelectorAll("text.taskText, text.taskTextOutsideRight, text.taskTextOutsideLeft")]
          .map((t) => t.textContent);
        const sections = [...out.querySelectorAll("text.sectionTitle")].map((t) => t.textContent);
        return { ok: true, type: parsed.diagramType, tasks, sections };
      } catch (e) {
        return { ok: false, error: String(e && e.message ? e.message : e) };
      }
    }, text);
    results.push({ file, ...r });
  }
  process.stdout.write(JSON.stringify({ results }) + "\n");
} finally {
  await browser.close();
}
