import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import type { BalanceFigures, WabaSummary } from '../api/types'
import WabaFigures from './WabaFigures.vue'

const plain = (text: string) => text.replace(/\u00a0/g, ' ')
const own: BalanceFigures = {
  total: 1_500_000,
  available: 2_500_000,
  wabi: { allowance: 0, remaining: 0, resetsAt: '2026-12-18T17:00:00+00:00' },
  additional: { remaining: 1_500_000 },
  postpaid: { limit: 1_000_000, used: 0 },
}
const waba = (id: string, balance: BalanceFigures | null = null): WabaSummary => ({
  wabaId: id,
  name: `WABA ${id}`,
  spentThisCycle: 700_000,
  dailySpend: 100_000,
  balance,
})

describe('WabaFigures', () => {
  it('a v3 pool: each WABA with its spend and daily spend, no balance column', () => {
    const wrapper = mount(WabaFigures, { props: { wabas: [waba('1'), waba('2')], currency: 'IDR' } })
    expect(wrapper.findAll('tbody tr')).toHaveLength(2)
    expect(wrapper.findAll('thead th')).toHaveLength(3)
    expect(plain(wrapper.get('[data-waba="1"]').text())).toContain('Rp 7.000')
    expect(plain(wrapper.get('[data-waba="1"]').text())).toContain('Rp 1.000')
    expect(wrapper.get('caption').text()).toContain('daily spend')
  })

  it("a v2 company: each WABA's own balance", () => {
    const wrapper = mount(WabaFigures, { props: { wabas: [waba('1', own), waba('2')], currency: 'IDR' } })
    expect(wrapper.findAll('thead th')).toHaveLength(4)
    expect(plain(wrapper.get('[data-waba="1"]').text())).toContain('Rp 15.000 available Rp 25.000')
    expect(wrapper.get('[data-waba="2"]').text()).toContain('Shared pool')
  })

  it('empty: no WABAs', () => {
    expect(mount(WabaFigures, { props: { wabas: [], currency: 'IDR' } }).text()).toContain('No WABAs yet.')
  })
})
