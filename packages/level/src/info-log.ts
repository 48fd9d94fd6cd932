/**
 * What LevelDB reported about damage while opening, read from its info log.
 *
 * LevelDB (1.20, as classic-level 3 bundles it, opened without paranoid_checks) recovers a
 * damaged write-ahead log by SKIPPING what fails its checks: the open succeeds, and the
 * acknowledged writes in the skipped part are gone. It says so only in the info log, the file
 * `LOG` in the db folder. DB::Open renames the previous `LOG` to `LOG.old` and starts a new one
 * (SanitizeOptions in db_impl.cc), before recovering: so after open() `LOG` holds exactly what
 * THIS open wrote, recovery first. The lines that mean damage (db_impl.cc, log_reader.cc):
 *
 *   RecoverLogFile's reporter:  "[(ignoring error) ]<dir>/000123.log: dropping <n> bytes; <status>"
 *       where <status> is e.g. "Corruption: checksum mismatch" (the rest of a 32 KiB block is
 *       dropped with the bad record), "Corruption: bad record length", "Corruption: error in
 *       middle of record", "Corruption: partial record without end(1)", "Corruption: missing
 *       start of fragmented record(2)", "Corruption: unknown record type 9", "Corruption: log
 *       record too small", or an IO error
 *   MaybeIgnoreError:           "Ignoring error <status>"  (a log that could not be read or
 *       a batch in it that could not be applied)
 *
 * Any other line carrying a "Corruption:" status is reported too. What LevelDB drops without
 * a word is beyond this: a record cut short at the very end of the log (a crash mid-write: not
 * acknowledged, so nothing is lost), and a damaged length field in the LAST block of the log,
 * which log_reader.cc takes for such a cut and ends the log there — acknowledged writes and
 * all. acked.ts catches that one.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

/** LOG lines start with a timestamp and a thread id: "2026/12/05-16:31:22.123456 7f0a1b2c3d4e …". */
const PREFIX = /^\d{4}\/\d{2}\/\d{2}-\d{2}:\d{2}:\d{2}\.\d+ \S+ /
const DROPPED = /^(?:\(ignoring error\) )?(.*): dropping (\d+) bytes; (.*)$/
const IGNORED = /^Ignoring error (.*)$/

/** Damage LevelDB reported in `<dir>/LOG` (see above), in words; [] if none or no LOG. */
export async function infoLogDamage(dir: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(join(dir, 'LOG'), 'utf8')
  } catch {
    return [] // no info log (another Env, or it could not be created): nothing to read
  }
  return parseInfoLog(text)
}

export function parseInfoLog(text: string): string[] {
  const damage: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.replace(PREFIX, '').trim()
    let m: RegExpExecArray | null
    if ((m = DROPPED.exec(line)) !== null) {
      damage.push(
        `LevelDB dropped ${m[2]} bytes of its write-ahead log ${m[1]} while recovering it (${m[3]}): writes acknowledged before the last shutdown may be lost`,
      )
    } else if ((m = IGNORED.exec(line)) !== null) {
      damage.push(`LevelDB ignored an error while recovering its write-ahead log (${m[1]}): writes acknowledged before the last shutdown may be lost`)
    } else if (line.includes('Corruption:')) {
      damage.push(`LevelDB reported corruption: ${line}`)
    }
  }
  return damage
}
