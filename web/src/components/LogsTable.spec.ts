import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import type { LogFilters } from '../api/types'
import { logRow, wireLogRow } from '../test/fixtures'
import { toLogRow } from '../api/client'
import LogsTable from './LogsTable.vue'

const none: LogFilters = { wabaId: null, category: null, from: null, to: null }
const wabas = [
  { wabaId: '111', name: 'Sales' },
  { wabaId: '222', name: 'Support' },
]

function mountTable(props: Record<string, unknown> = {}) {
  return mount(LogsTable, {
    props: {
      state: 'success',
      rows: [logRow(2), logRow(1, { amount: 0, refunded: true, category: 'service' })],
      showWabaId: false,
      filters: none,
      wabas,
      wabasState: 'success',
      hasMore: false,
      moreState: 'idle',
      currency: 'IDR',
      timeZone: 'Asia/Jakarta',
      download: () => new Promise(() => undefined),
      ...props,
    },
  })
}

const headers = (wrapper: ReturnType<typeof mountTable>) => wrapper.findAll('thead th').map((th) => th.text())

describe('LogsTable', () => {
  it('is a table named "Deduction logs" inside a focusable, labelled scroll region', () => {
    const wrapper = mountTable()
    const table = wrapper.get('table')
    expect(table.get('caption').text()).toBe('Deduction logs')
    const region = wrapper.get('[role="region"]')
    expect(region.attributes('tabindex')).toBe('0')
    expect(region.attributes('aria-label')).toBe('Deduction logs table (scrolls)')
  })

  it('success: rows newest first with time in the company zone, amount, bucket, masked recipient', () => {
    const cells = mountTable().findAll('tbody tr')[0]!.findAll('td').map((td) => td.text().replace(/\u00a0/g, ' '))
    expect(cells).toEqual(['1 Dec, 14:01', 'bc-0006', 'Marketing', 'B••• S••• +62•••789', 'Rp 680', 'Allowance (WABI)'])
  })

  it('a free message says so and a refunded one is tagged', () => {
    const row = mountTable().findAll('tbody tr')[1]!
    expect(row.text()).toContain('Free')
    expect(row.get('.tag').text()).toBe('refunded')
  })

  it('the WABA columns appear only when the preference is on', () => {
    expect(headers(mountTable())).not.toContain('WABA ID')
    const rows = [toLogRow(wireLogRow(1, { waba_id: '111', waba_name: 'Sales' }))]
    const shown = mountTable({ rows, showWabaId: true })
    expect(headers(shown)).toEqual(['Time', 'WABA', 'WABA ID', 'Broadcast', 'Category', 'Recipient', 'Amount', 'Bucket'])
    expect(shown.get('tbody tr').text()).toContain('111')
  })

  it('loading: skeleton rows of the final size in the same box', () => {
    const wrapper = mountTable({ state: 'loading', rows: [] })
    expect(wrapper.findAll('tbody .skeleton-row')).toHaveLength(8)
    expect(wrapper.get('[role="region"]').attributes('aria-busy')).toBe('true')
  })

  it('error: message and retry', async () => {
    const wrapper = mountTable({ state: 'error', rows: [], errorMessage: 'the server answered 500.' })
    expect(wrapper.text()).toContain("We couldn't load the deduction logs. the server answered 500.")
    await wrapper.get('tbody button').trigger('click')
    expect(wrapper.emitted('retry')).toHaveLength(1)
  })

  it('empty without filters: nothing yet; with filters: no match and Clear filters', async () => {
    expect(mountTable({ state: 'empty', rows: [] }).text()).toContain('No deductions yet this cycle.')
    const filtered = mountTable({ state: 'empty', rows: [], filters: { ...none, wabaId: '111', category: 'utility' } })
    expect(filtered.text()).toContain('No deductions match these filters.')
    await filtered.get('tbody button').trigger('click')
    expect(filtered.emitted('update:filters')).toEqual([[none]])
  })

  it('filters emit the whole new filter: WABA, category and dates', async () => {
    const wrapper = mountTable({ filters: { ...none, category: 'marketing' } })
    const [waba, category] = wrapper.findAll('select')
    await waba!.setValue('222')
    await category!.setValue('')
    const [from, to] = wrapper.findAll('input[type="date"]')
    await from!.setValue('2026-11-20')
    await to!.setValue('2026-11-25')
    expect(wrapper.emitted('update:filters')).toEqual([
      [{ ...none, category: 'marketing', wabaId: '222' }],
      [{ ...none, category: null }],
      [{ ...none, category: 'marketing', from: '2026-11-20' }],
      [{ ...none, category: 'marketing', to: '2026-11-25' }],
    ])
  })

  it('Load more is offered with a cursor and emits load-more; partial says more failed', async () => {
    const wrapper = mountTable({ hasMore: true })
    await wrapper.get('.logs-footer button').trigger('click')
    expect(wrapper.emitted('load-more')).toHaveLength(1)
    const partial = mountTable({ state: 'partial', hasMore: true, moreState: 'error', errorMessage: 'x.' })
    expect(partial.findAll('tbody tr')).toHaveLength(2)
    expect(partial.get('.logs-footer').text()).toContain("We couldn't load more rows. x.")
    expect(partial.get('.logs-footer button').text()).toBe('Try again')
  })

  it('has the CSV button', () => {
    expect(mountTable().get('.csv button').text()).toBe('Download CSV')
  })
})
