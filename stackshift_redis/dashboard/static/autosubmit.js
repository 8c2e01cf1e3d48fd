// Posts a form marked data-autosubmit once the page has loaded: the bulk progress page
// goes on to the next part by itself (without script, its Continue button does it).
document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
  setTimeout(function () { form.submit(); }, 150);
});
