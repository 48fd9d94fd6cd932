/**
 * The acknowledged-batch mark: what open() compares with what LevelDB recovered, to catch the
 * loss LevelDB does not report. Its info log (info-log.ts) names what it dropped for a record
 * that fails its checksum, but a damaged length field in the log's last 32 KiB block reads to
 * log_reader.cc like a write cut short by a crash: the rest of the log is dropped without a
 * word — acknowledged writes included (seen: 30 of 60 gone, LOG clean).
 *
 * So every group-commit batch also puts its number into the store keyspace ('batch'), in the
 * same atomic batch, and once LevelDB has acknowledged it the store writes that number into
 * this file in the db folder (12 bytes at offset 0: the number as f64 BE, then a crc32 of
 * those 8 bytes; one pwrite per batch, not fsynced). At open, a recovered 'batch' record
 * BELOW the file's number means batches that were acknowledged are gone. The file can only
 * lag behind LevelDB (a crash between the batch and its mark, or a power loss the file did
 * not survive), which this check reads as no loss: it never reports a loss that did not happen.
 * LevelDB ignores files it does not name itself.
 */
import { closeSync, existsSync, openSync, readSync, writeSync, constants } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'

export const ACKED_FILE = 'convergent-acked'

export class AckedMark {
  private readonly buffer = new Uint8Array(12)
  private readonly view = new DataView(this.buffer.buffer)

  private constructor(private fd: number | undefined) {}

  /** Opens (creating it if missing) the mark in the db folder; `readOnly`: as it is, never written (none if missing). */
  static open(dir: string, readOnly = false): AckedMark {
    if (readOnly) {
      const mark = new AckedMark(existsSync(join(dir, ACKED_FILE)) ? openSync(join(dir, ACKED_FILE), constants.O_RDONLY) : undefined)
      mark.readOnly = true
      return mark
    }
    return new AckedMark(openSync(join(dir, ACKED_FILE), constants.O_RDWR | constants.O_CREAT, 0o644))
  }

  private readOnly = false

  /** The last acknowledged batch number written, or undefined if none (a new or unreadable file). */
  read(): number | undefined {
    if (this.fd === undefined) return undefined
    const bytes = new Uint8Array(12)
    if (readSync(this.fd, bytes, 0, 12, 0) !== 12) return undefined
    const view = new DataView(bytes.buffer)
    if (crc32(bytes.subarray(0, 8)) !== view.getUint32(8)) return undefined
    return view.getFloat64(0)
  }

  /** Records that batch `n` is acknowledged. */
  write(n: number): void {
    if (this.fd === undefined || this.readOnly) return
    this.view.setFloat64(0, n)
    this.view.setUint32(8, crc32(this.buffer.subarray(0, 8)))
    writeSync(this.fd, this.buffer, 0, 12, 0)
  }

  close(): void {
    if (this.fd === undefined) return
    closeSync(this.fd)
    this.fd = undefined
  }
}
