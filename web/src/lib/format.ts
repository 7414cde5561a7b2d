/** Money and time for people: Intl, the company's currency and timezone, exact integers (never floats). */

import { messages } from './messages'

/**
 * ISO 4217 minor units as the API states them (`currency_exponent` of billings/info, from the backend's
 * ISO 4217 package): never a table of our own. Intl's currency data is CLDR's, which differs from ISO 4217
 * for some codes (IDR has 2 minor digits in ISO, 0 in CLDR), so it is not asked. Until the API has spoken
 * about a currency its amounts read with 2 digits, ISO 4217's most common minor unit.
 */
const currencyExponents = new Map<string, number>()
const DEFAULT_EXPONENT = 2
const moneyFormats = new Map<string, Intl.NumberFormat>()
/** The locale amounts are written in, per currency (SPEC: IDR in id-ID, "Rp 1.234.567"). */
const CURRENCY_LOCALES: Record<string, string> = {
  IDR: 'id-ID',
  USD: 'en-US',
  SGD: 'en-SG',
  MYR: 'ms-MY',
  EUR: 'de-DE',
  JPY: 'ja-JP',
}
const MINUS = '\u2212'

/** Record the API's minor unit of `currency` (an integer 0..9; anything else is ignored). */
export function setCurrencyExponent(currency: string, exponent: number): void {
  if (!Number.isInteger(exponent) || exponent < 0 || exponent > 9) return
  const code = currency.toUpperCase()
  if (currencyExponents.get(code) === exponent) return
  currencyExponents.set(code, exponent)
  moneyFormats.delete(code)
}

export function currencyExponent(currency: string): number {
  return currencyExponents.get(currency.toUpperCase()) ?? DEFAULT_EXPONENT
}

/** Minor units as an exact decimal string in major units: 123456 (IDR) -> "1234.56". */
export function minorToDecimal(amountMinor: number, currency: string): string {
  if (!Number.isSafeInteger(amountMinor)) throw new RangeError(`not an exact amount: ${amountMinor}`)
  const exponent = currencyExponent(currency)
  const digits = String(Math.abs(amountMinor)).padStart(exponent + 1, '0')
  const whole = exponent ? digits.slice(0, -exponent) : digits
  const fraction = exponent ? digits.slice(-exponent) : ''
  return `${amountMinor < 0 ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`
}

function moneyFormat(currency: string): Intl.NumberFormat {
  const code = currency.toUpperCase()
  let format = moneyFormats.get(code)
  if (!format) {
    format = new Intl.NumberFormat(CURRENCY_LOCALES[currency] ?? 'id-ID', {
      style: 'currency',
      currency,
      // "Rp 1.234.567": whole amounts without ",00", a fraction only when there is one.
      minimumFractionDigits: 0,
      maximumFractionDigits: currencyExponent(currency),
    })
    moneyFormats.set(code, format)
  }
  return format
}

/** "Rp 1.234.567"; negative as "−Rp 11.000" (a real minus sign before the symbol). */
export function formatMoney(amountMinor: number, currency: string): string {
  // A decimal string keeps Intl exact (Intl.NumberFormat v3 formats strings without going through a float).
  const decimal = minorToDecimal(Math.abs(amountMinor), currency) as `${number}`
  const text = moneyFormat(currency).format(decimal)
  return amountMinor < 0 ? `${MINUS}${text}` : text
}

/** Major units typed by a person ("500000", "1234.56") as exact minor units, or null: digits with at most one `.`
 * as the decimal point and no more decimals than the currency has; thousands separators are refused, not guessed. */
export function decimalToMinor(text: string, currency: string): number | null {
  const exponent = currencyExponent(currency)
  const match = text.trim().match(/^(\d+)(?:\.(\d+))?$/)
  if (!match) return null
  const fraction = match[2] ?? ''
  if (fraction.length > exponent) return null
  const minor = BigInt(match[1]!) * 10n ** BigInt(exponent) + BigInt(fraction.padEnd(exponent, '0') || '0')
  return minor <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(minor) : null
}

/** Minor units as a person would type them back: "500000", "1234.5" (no trailing zeros, no separators). */
export function minorToInput(amountMinor: number, currency: string): string {
  const decimal = minorToDecimal(amountMinor, currency)
  return decimal.includes('.') ? decimal.replace(/\.?0+$/, '') : decimal
}

/** Whole percent of `part` in `whole`, rounded down, exact for any safe integers. */
export function percentOf(part: number, whole: number): number {
  if (whole <= 0) return 0
  return Number((BigInt(Math.max(part, 0)) * 100n) / BigInt(whole))
}

const dateFormats = new Map<string, Intl.DateTimeFormat>()

function dateFormat(timeZone: string, style: 'dateTime' | 'date' | 'time' | 'dayMonth'): Intl.DateTimeFormat {
  const key = `${timeZone}|${style}`
  let format = dateFormats.get(key)
  if (!format) {
    const options: Intl.DateTimeFormatOptions =
      style === 'dateTime'
        ? { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }
        : style === 'date'
          ? { day: 'numeric', month: 'short', year: 'numeric' }
          : style === 'time'
            ? { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }
            : { day: 'numeric', month: 'short' }
    format = new Intl.DateTimeFormat(messages.locale, { ...options, timeZone })
    dateFormats.set(key, format)
  }
  return format
}

/** "1 Jan, 00:00" in the company timezone. */
export function formatDateTime(iso: string, timeZone: string): string {
  return dateFormat(timeZone, 'dateTime').format(new Date(iso))
}

export function formatDate(iso: string, timeZone: string): string {
  return dateFormat(timeZone, 'date').format(new Date(iso))
}

export function formatTime(iso: string, timeZone: string): string {
  return dateFormat(timeZone, 'time').format(new Date(iso))
}

/** A calendar day (YYYY-MM-DD, already in the company zone) as "3 Dec". */
export function formatDay(date: string): string {
  return dateFormat('UTC', 'dayMonth').format(new Date(`${date}T00:00:00Z`))
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`
  return `${(Math.round(bytes / 104857.6) / 10).toFixed(1)} MB`
}
