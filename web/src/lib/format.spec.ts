import { describe, expect, it } from 'vitest'
import { currencyExponent, formatMoney, minorToDecimal, percentOf, setCurrencyExponent } from './format'

const NBSP = /\u00a0/g

describe('money', () => {
  setCurrencyExponent('JPY', 0)
  it('turns minor units into an exact decimal string with the currency exponent', () => {
    expect(minorToDecimal(123_456_789, 'IDR')).toBe('1234567.89')
    expect(minorToDecimal(5, 'IDR')).toBe('0.05')
    expect(minorToDecimal(-1_100_000, 'IDR')).toBe('-11000.00')
    expect(minorToDecimal(1500, 'JPY')).toBe('1500')
    expect(minorToDecimal(Number.MAX_SAFE_INTEGER, 'IDR')).toBe('90071992547409.91')
  })

  it('refuses amounts that are not exact integers', () => {
    expect(() => minorToDecimal(1.5, 'IDR')).toThrow(RangeError)
    expect(() => minorToDecimal(2 ** 53, 'IDR')).toThrow(RangeError)
  })

  it('formats IDR in id-ID as "Rp 1.234.567", a fraction only when there is one', () => {
    expect(formatMoney(123_456_700, 'IDR').replace(NBSP, ' ')).toBe('Rp 1.234.567')
    expect(formatMoney(42_050, 'IDR').replace(NBSP, ' ')).toBe('Rp 420,5')
    expect(currencyExponent('idr')).toBe(2)
  })

  it('writes a negative total with a real minus sign before the symbol', () => {
    expect(formatMoney(-1_100_000, 'IDR').replace(NBSP, ' ')).toBe('\u2212Rp 11.000')
  })

  it('keeps the exact digits of amounts beyond float precision', () => {
    expect(formatMoney(Number.MAX_SAFE_INTEGER, 'IDR').replace(NBSP, ' ')).toBe('Rp 90.071.992.547.409,91')
  })

  it('takes each currency\'s minor unit from the API, not from a table of its own', () => {
    setCurrencyExponent('BHD', 3)
    setCurrencyExponent('clf', 4)
    setCurrencyExponent('VND', 0)
    expect(minorToDecimal(1_234_567, 'BHD')).toBe('1234.567')
    expect(minorToDecimal(12_345, 'CLF')).toBe('1.2345')
    expect(minorToDecimal(25_000, 'VND')).toBe('25000')
    expect(formatMoney(25_000, 'VND')).toContain('25')
    expect(formatMoney(25_000, 'VND')).not.toContain('250,00')
    expect(currencyExponent('KRW')).toBe(2) // not stated yet: ISO 4217's common 2
    setCurrencyExponent('KRW', 0)
    expect(minorToDecimal(1000, 'KRW')).toBe('1000')
  })

  it('ignores an exponent that is not a small whole number', () => {
    setCurrencyExponent('USD', 2)
    setCurrencyExponent('USD', 1.5)
    setCurrencyExponent('USD', -1)
    expect(currencyExponent('USD')).toBe(2)
  })

  it('computes whole percentages with integers', () => {
    expect(percentOf(1, 3)).toBe(33)
    expect(percentOf(200, 200)).toBe(100)
    expect(percentOf(5, 0)).toBe(0)
    expect(percentOf(Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER)).toBe(99)
  })
})
