import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

export const CHROMIUM_PATHS = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']

export interface RenderCheck {
  ok: boolean
  browser: string
  problems: string[]
  /** Size of the screenshot Chromium took of the page. */
  screenshotBytes: number
}

/** The headless browser to use, or undefined if none is installed. */
export function findChromium(): string | undefined {
  return CHROMIUM_PATHS.find((p) => existsSync(p))
}

/**
 * Opens report.html in headless Chromium: the DOM it renders must hold the timeline SVG with
 * its plots and the checks table, and a screenshot must come out. Returns undefined when no
 * Chromium is installed (Debian package `chromium`).
 */
export function checkHtmlInChromium(htmlPath: string): RenderCheck | undefined {
  const browser = findChromium()
  if (browser === undefined) return undefined
  const url = pathToFileURL(resolve(htmlPath)).href
  const flags = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars']
  const problems: string[] = []
  const dom = spawnSync(browser, [...flags, '--dump-dom', url], { encoding: 'utf8', timeout: 60_000 })
  if (dom.status !== 0) problems.push(`chromium --dump-dom exited with ${dom.status}: ${dom.stderr.slice(0, 500)}`)
  const html = dom.stdout ?? ''
  for (const [what, pattern] of [
    ['the timeline SVG', /<svg[^>]*id="timeline"/],
    ['a plotted series', /<path |<polyline /],
    ['the checks table', /<h2>Checks<\/h2>/],
  ] as const) {
    if (!pattern.test(html)) problems.push(`the rendered page has no ${what}`)
  }
  if (/\bNaN\b|>undefined</.test(html)) problems.push('the rendered page shows NaN or undefined')
  const dir = mkdtempSync(join(tmpdir(), 'sim-html-'))
  let screenshotBytes = 0
  try {
    const shot = join(dir, 'page.png')
    const run = spawnSync(browser, [...flags, '--window-size=1200,1600', `--screenshot=${shot}`, url], { encoding: 'utf8', timeout: 60_000 })
    if (existsSync(shot)) screenshotBytes = statSync(shot).size
    if (run.status !== 0 || screenshotBytes < 10_000) problems.push(`no usable screenshot (exit ${run.status}, ${screenshotBytes} bytes)`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return { ok: problems.length === 0, browser, problems, screenshotBytes }
}
