import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import WabaFilter from './WabaFilter.vue'

const wabas = [
  { wabaId: '111', name: 'Sales' },
  { wabaId: '222', name: 'Support' },
]

describe('WabaFilter', () => {
  it('is a select labelled "WABA" with All WABAs then each WABA by name (id in the title)', () => {
    const wrapper = mount(WabaFilter, { props: { modelValue: null, wabas, state: 'success' } })
    const select = wrapper.get('select')
    expect(wrapper.get(`label[for="${select.attributes('id')}"]`).text()).toBe('WABA')
    const options = wrapper.findAll('option')
    expect(options.map((o) => o.text())).toEqual(['All WABAs', 'Sales', 'Support'])
    expect(options[1]!.attributes('title')).toBe('111')
  })

  it('emits the chosen WABA id, and null for All WABAs', async () => {
    const wrapper = mount(WabaFilter, { props: { modelValue: '111', wabas, state: 'success' } })
    expect((wrapper.get('select').element as HTMLSelectElement).value).toBe('111')
    await wrapper.get('select').setValue('222')
    await wrapper.get('select').setValue('')
    expect(wrapper.emitted('update:modelValue')).toEqual([['222'], [null]])
  })

  it('loading: disabled until the WABA list arrives', () => {
    const wrapper = mount(WabaFilter, { props: { modelValue: null, wabas: [], state: 'loading' } })
    expect(wrapper.get('select').attributes('disabled')).toBeDefined()
  })

  it('error: All WABAs still works and a note says the list is unavailable', () => {
    const wrapper = mount(WabaFilter, { props: { modelValue: null, wabas: [], state: 'error' } })
    expect(wrapper.get('select').attributes('disabled')).toBeUndefined()
    expect(wrapper.text()).toContain('WABA list unavailable')
    expect(wrapper.get('select').attributes('aria-describedby')).toBeTruthy()
  })

  it('empty: only All WABAs', () => {
    const wrapper = mount(WabaFilter, { props: { modelValue: null, wabas: [], state: 'empty' } })
    expect(wrapper.findAll('option')).toHaveLength(1)
  })
})
